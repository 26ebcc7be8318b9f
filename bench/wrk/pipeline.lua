-- HTTP/1.1 pipelining: each write carries `depth` GET requests (first script argument, 16 by
-- default); wrk counts every response and sends the next batch once all have arrived.
function init(args)
  local depth = tonumber(args[1] or "16")
  local batch = {}
  for i = 1, depth do
    batch[i] = wrk.format()
  end
  pipelined = table.concat(batch)
end

function request()
  return pipelined
end
