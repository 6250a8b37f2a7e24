# bench/overload: make a copy of the routing script busy-wait N ms (wall clock) per new INVITE
# (argv: path, ms); Kamailio gets the same loop (bench/sip/kamailio.cfg, INVITE_COST_US).
import sys
path, ms = sys.argv[1], float(sys.argv[2])
src = open(path).read()
src = src.replace("    contacts = registrar.lookup(request.ruri)",
    "    if request.method == \"INVITE\":\n"
    "        import time\n"
    "        end = time.perf_counter() + %f\n"
    "        while time.perf_counter() < end:\n"
    "            pass\n"
    "    contacts = registrar.lookup(request.ruri)" % (ms / 1000.0))
open(path, "w").write(src)
