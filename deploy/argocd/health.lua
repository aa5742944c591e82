-- Argo CD health check for every vaultsync.io kind (VaultSecret, VaultDynamicSecret, VaultPKISecret,
-- VaultConnection, VaultSecretSet, ClusterVaultSecretSet). Argo CD runs it with gopher-lua (Lua 5.1):
-- `obj` is the resource, the script returns {status, message}. Registered once per kind in argocd-cm
-- (resource.customizations.health.vaultsync.io_<Kind>, see docs/argocd.md).
--   Healthy      Ready=True, and the operator has seen the latest spec (observedGeneration == generation)
--   Progressing  no status or no Ready condition yet, observedGeneration behind, Ready=Unknown,
--                Reconciling=True (kstatus), or Ready=False with a reason that says work is under way
--   Degraded     Ready=False (its reason and message), or Stalled=True (kstatus)
local hs = {}

-- Reasons of Ready=False that mean "not done yet" rather than "failed".
local progress_reasons = { Pending = true, Progressing = true, Reconciling = true }

local function find_condition(conditions, wanted)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if type(condition) == "table" and condition.type == wanted then
      return condition
    end
  end
  return nil
end

local function text(value)
  if value == nil then
    return ""
  end
  return tostring(value)
end

local function describe(condition)
  local reason = text(condition.reason)
  local message = text(condition.message)
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if reason ~= "" then
    return reason
  end
  return message
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

if type(status) ~= "table" then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator's first sync"
  return hs
end

local function behind(observed)
  return generation ~= nil and (observed == nil or observed < generation)
end

if behind(status.observedGeneration) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to process generation " .. text(generation) ..
    " (observed " .. (status.observedGeneration ~= nil and text(status.observedGeneration) or "none") .. ")"
  return hs
end

local stalled = find_condition(status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local ready = find_condition(status.conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if ready.observedGeneration ~= nil and behind(ready.observedGeneration) then
  hs.status = "Progressing"
  hs.message = "Ready describes generation " .. text(ready.observedGeneration) ..
    ", waiting for generation " .. text(generation)
  return hs
end

local reconciling = find_condition(status.conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

if ready.status == "False" and not progress_reasons[text(ready.reason)] then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready)
return hs
