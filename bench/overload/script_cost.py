# bench/overload: make a copy of the routing script burn N ms of CPU per new INVITE (argv: path, ms).
import sys
path, ms = sys.argv[1], float(sys.argv[2])
src = open(path).read()
src = src.replace("    contacts = registrar.lookup(request.ruri)",
    "    if request.method == \"INVITE\":\n"
    "        import time\n"
    "        end = time.thread_time() + %f\n"
    "        while time.thread_time() < end:\n"
    "            pass\n"
    "    contacts = registrar.lookup(request.ruri)" % (ms / 1000.0))
open(path, "w").write(src)
