-- Argo CD health check for modelyard.dev Dataset (Lua 5.1: Argo CD runs gopher-lua).
-- Progressing while the operator works, Healthy when the dataset is ready, Degraded only when
-- it failed or stalled, each with the operator's reason and message.

-- What a ready Dataset offers, when the operator's Ready condition says nothing.
local function ready_summary(status)
  if status.version ~= nil then
    return "Version " .. status.version
  end
  return ""
end

-- Shared by the three Modelyard health checks, identical in each (a unit test compares them).
-- The operator's conditions follow kstatus: work under way is Reconciling=True (Ready=Unknown,
-- or Ready=True while a usable result stands, e.g. during a retrain); a failure a human must fix
-- is Stalled=True and Ready=False with a stable reason; done is Ready=True alone.

local function find_condition(status, condition_type)
  if status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == condition_type then
      return condition
    end
  end
  return nil
end

local function has_text(value)
  return value ~= nil and value ~= ""
end

-- "Reason: message"; the condition's type stands in for a missing reason, so that a Degraded or
-- Progressing message always says what it is about.
local function describe(condition)
  local label = condition.reason
  if not has_text(label) then
    label = condition.type
  end
  if has_text(condition.message) then
    return label .. ": " .. condition.message
  end
  return label
end

local function assess(object)
  local status = object.status
  if status == nil then
    return { status = "Progressing", message = "Waiting for the operator to report status" }
  end

  -- A spec change the operator has not acted on yet: whatever the conditions say is about an
  -- older generation.
  local generation = object.metadata.generation
  if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
    return {
      status = "Progressing",
      message = "Waiting for the operator to observe generation " .. tostring(generation),
    }
  end

  local stalled = find_condition(status, "Stalled")
  if stalled ~= nil and stalled.status == "True" then
    return { status = "Degraded", message = describe(stalled) }
  end

  local ready = find_condition(status, "Ready")
  if ready ~= nil and ready.status == "False" then
    return { status = "Degraded", message = describe(ready) }
  end

  -- Checked before Ready=True: a retrain or a refresh is on its way even while the last result
  -- is still served, and the Application is not done until it lands.
  local reconciling = find_condition(status, "Reconciling")
  if reconciling ~= nil and reconciling.status == "True" then
    return { status = "Progressing", message = describe(reconciling) }
  end

  if ready == nil then
    return { status = "Progressing", message = "Waiting for the Ready condition" }
  end
  if ready.status == "True" then
    if has_text(ready.reason) or has_text(ready.message) then
      return { status = "Healthy", message = describe(ready) }
    end
    return { status = "Healthy", message = ready_summary(status) }
  end
  return { status = "Progressing", message = describe(ready) }
end

return assess(obj)
