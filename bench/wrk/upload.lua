-- A 64 KiB POST body on every request (wrk adds the Content-Length header).
wrk.method = "POST"
wrk.body = string.rep("x", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
