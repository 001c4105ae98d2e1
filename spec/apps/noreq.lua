-- spec/apps/noreq.lua: an app without a request hook; every plain request must get 404.
return {}
