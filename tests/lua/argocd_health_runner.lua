-- Runs an Argo CD health script the way Argo CD does: `obj` (the resource, JSON on stdin) is a global,
-- JSON null is absent (nil), and only the libraries Argo CD opens are there (no io, os, require, load*).
-- Usage: lua5.1 argocd_health_runner.lua health.lua < object.json   ->   {"status": ..., "message": ...}
local cjson = require("cjson")

local function denull(value)
  if value == cjson.null then
    return nil
  end
  if type(value) == "table" then
    for key, item in pairs(value) do
      value[key] = denull(item)
    end
  end
  return value
end

local chunk = assert(loadfile(arg[1]))
local env = {
  obj = denull(cjson.decode(io.read("*a"))),
  string = string, table = table, math = math,
  pairs = pairs, ipairs = ipairs, next = next, type = type, tostring = tostring, tonumber = tonumber,
  select = select, unpack = unpack, error = error, pcall = pcall, assert = assert,
}
setfenv(chunk, env)
local hs = chunk()
if type(hs) ~= "table" then
  error("the health script returned " .. type(hs) .. ", not a table")
end
io.write(cjson.encode({ status = hs.status, message = hs.message or "" }))
