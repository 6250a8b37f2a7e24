# The extensions page's HTTP snippet ("3. Serve routes in your script"), as the page prints it;
# scripting/tests/test_http_page.py runs the page's test against it.
from siphon import http

@http.route("/healthz")
def healthz(req):
    return http.Response(status=200, body=b"ok")

@http.route("/users/{id}", methods=["GET"])
async def get_user(req):
    async with http.Client("api") as client:
        upstream = await client.get(f"/v1/users/{req.path_params['id']}")
    return http.Response(status=upstream.status, body=upstream.body)
