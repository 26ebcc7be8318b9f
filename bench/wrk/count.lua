-- Stops after a fixed number of responses (first script argument): the memory growth check
-- needs request counts, not durations. With -t1 the count is for the whole run. wrk itself
-- waits out its -d duration, so the line printed here tells bench/run.py to end it (SIGINT
-- makes wrk print its summary at once).
function init(args)
  limit = tonumber(args[1])
  seen = 0
end

function response(status, headers, body)
  seen = seen + 1
  if seen == limit then
    wrk.thread:stop()
    io.write("limit reached\n")
    io.flush()
  end
end
