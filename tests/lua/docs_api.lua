-- Lists every name on the realtime table, with its type ("api: Publish
-- function"), for TestDocsAPIFunctions to compare with docs/API.md.
HOST.Run(function()
	for name, value in pairs(realtime) do print("api: " .. tostring(name) .. " " .. type(value)) end
end)
