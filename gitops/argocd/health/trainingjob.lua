-- Argo CD health check for modelyard.dev TrainingJob (Lua 5.1, as Argo CD's gopher-lua runs it).
-- Progressing until the operator has observed the current generation and reported Ready;
-- Healthy on Ready=True; Degraded on Ready=False, with the condition's reason and message.
local hs = {}

local function ready_condition(status)
  if status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      return condition
    end
  end
  return nil
end

local function describe(condition)
  local text = condition.message or ""
  if condition.reason ~= nil and condition.reason ~= "" then
    if text == "" then
      return condition.reason
    end
    return condition.reason .. ": " .. text
  end
  return text
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = ready_condition(status)
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  if hs.message == "" and status.model ~= nil and status.model.digest ~= nil then
    hs.message = "Model " .. status.model.digest
  end
  return hs
end

if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready)
if hs.message == "" then
  hs.message = "Ready is " .. tostring(ready.status)
end
return hs
