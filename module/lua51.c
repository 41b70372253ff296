/* Resolving the Lua 5.1 C API at open; see lua51.h. */
#define _GNU_SOURCE
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <dlfcn.h>
#endif

#include "lua51.h"

struct rt_lua lua;

static const struct {
	const char *name;
	size_t offset;
} lua_symbols[] = {
#define SYM(field, name) {name, offsetof(struct rt_lua, field)}
    SYM(gettop, "lua_gettop"),
    SYM(settop, "lua_settop"),
    SYM(pushvalue, "lua_pushvalue"),
    SYM(insert, "lua_insert"),
    SYM(replace, "lua_replace"),
    SYM(type, "lua_type"),
    SYM(typename, "lua_typename"),
    SYM(tolstring, "lua_tolstring"),
    SYM(tonumber, "lua_tonumber"),
    SYM(toboolean, "lua_toboolean"),
    SYM(touserdata, "lua_touserdata"),
    SYM(topointer, "lua_topointer"),
    SYM(pushnil, "lua_pushnil"),
    SYM(pushnumber, "lua_pushnumber"),
    SYM(pushlstring, "lua_pushlstring"),
    SYM(pushstring, "lua_pushstring"),
    SYM(pushboolean, "lua_pushboolean"),
    SYM(pushcclosure, "lua_pushcclosure"),
    SYM(pushlightuserdata, "lua_pushlightuserdata"),
    SYM(createtable, "lua_createtable"),
    SYM(getfield, "lua_getfield"),
    SYM(setfield, "lua_setfield"),
    SYM(rawget, "lua_rawget"),
    SYM(rawset, "lua_rawset"),
    SYM(rawgeti, "lua_rawgeti"),
    SYM(rawseti, "lua_rawseti"),
    SYM(next, "lua_next"),
    SYM(getmetatable, "lua_getmetatable"),
    SYM(pcall, "lua_pcall"),
    SYM(cpcall, "lua_cpcall"),
    SYM(error, "lua_error"),
    SYM(checkstack, "lua_checkstack"),
#undef SYM
};

#ifdef _WIN32
static void *lookup(const char *name) {
	static const char *const dlls[] = {"lua_shared.dll", "lua_shared_srv.dll", "lua51.dll", "lua5.1.dll"};
	for (size_t i = 0; i < sizeof dlls / sizeof dlls[0]; i++) {
		HMODULE h = GetModuleHandleA(dlls[i]);
		if (h) {
			void *p = (void *)GetProcAddress(h, name);
			if (p)
				return p;
		}
	}
	return NULL;
}
#else
/* GMod loads lua_shared privately (RTLD_LOCAL), so the API may not be in
 * the global scope; the library is already loaded, so RTLD_NOLOAD finds it
 * by name without loading anything. */
static void *lookup(const char *name) {
	static const char *const libs[] = {
	    "garrysmod/bin/lua_shared_srv.so", "bin/linux64/lua_shared.so", "bin/linux32/lua_shared.so",
	    "garrysmod/bin/lua_shared.so",     "lua_shared_srv.so",         "lua_shared.so",
	};
	void *p = dlsym(RTLD_DEFAULT, name);
	for (size_t i = 0; !p && i < sizeof libs / sizeof libs[0]; i++) {
		void *h = dlopen(libs[i], RTLD_LAZY | RTLD_NOLOAD);
		if (h) {
			p = dlsym(h, name);
			dlclose(h);
		}
	}
	return p;
}
#endif

const char *rt_resolve(void) {
	static int done;
	if (done)
		return NULL;
	for (size_t i = 0; i < sizeof lua_symbols / sizeof lua_symbols[0]; i++) {
		void *p = lookup(lua_symbols[i].name);
		if (!p)
			return lua_symbols[i].name;
		memcpy((char *)&lua + lua_symbols[i].offset, &p, sizeof p);
	}
	done = 1;
	return NULL;
}
