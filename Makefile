# gmsv_realtime. `make test` and `make demo` are the two commands the README gives;
# both install what is missing (scripts/deps.sh) on Debian as root.

GO        ?= go
FUZZTIME  ?= 10s
PKGS      := ./...

.PHONY: all deps deps-test test unit fuzz luafuzz sanitize lint module module-all hosts tools demo bench bench-soak

all: lint test

deps:
	@scripts/deps.sh

# Also Wine and LuaJIT's source package (only make test runs the Windows
# DLLs) and Chromium (the dashboard's test).
deps-test:
	@scripts/deps.sh test

# Everything `go test -race` covers (unit, integration against a real
# redis-server, the Redis differential pattern test, the end-to-end tests of
# the built module in tests/host, the Windows DLLs under Wine included), a
# short run of every fuzz target, and the lint checks.
test: deps-test lint module-all hosts wine-hosts tools unit fuzz sanitize

# tests/ runs the binaries built by module-all and hosts.
unit:
	REALTIME_PREBUILT=1 $(GO) test -race -cover -count=1 -timeout 10m $(PKGS)

# One short exploration per fuzz target, one worker each; the seed corpora
# also run in `unit`. `make fuzz FUZZTIME=5m` hunts longer (scripts/fuzz.sh).
fuzz:
	SKIP_HANG=1 GO=$(GO) scripts/fuzz-selftest.sh
	FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz.sh

# staticcheck, pinned, from the Go module proxy; cppcheck comes from
# scripts/deps.sh. The C checks: findings are fixed, or suppressed inline
# with // cppcheck-suppress and the reason.
STATICCHECK_VERSION = v0.8.2
STATICCHECK = build/tools/staticcheck-$(STATICCHECK_VERSION)/staticcheck
CPPCHECK = cppcheck --enable=warning,style,performance,portability --inline-suppr --std=c11 --force \
	--error-exitcode=1 -q -Imodule -I/usr/include/luajit-2.1 -ULUA_USER_H

lint: $(STATICCHECK)
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)
	$(CPPCHECK) module/*.c tests/host/*.c

$(STATICCHECK):
	GOBIN=$(CURDIR)/$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# The Lua API fuzzer (tests/lua/fuzz.lua, TestLuaFuzz): new seeds for
# FUZZTIME; `unit` runs it once. SEED=n replays a seed; LUAFUZZ_STEPS=n.
fuzz: luafuzz
luafuzz: module hosts
	REALTIME_PREBUILT=1 LUAFUZZ_TIME=$(FUZZTIME) $(GO) test -count=1 -timeout 0 -run '^TestLuaFuzz$$' ./tests

# The end-to-end suite on LuaJIT 64 with the shim (Go's -asan, and UBSan)
# and the host built with -fsanitize=address,undefined: a memory error or
# undefined behaviour in C ends the host with the sanitizer's report. The
# Lua 5.1 and 32-bit hosts are left out (no ASan under qemu), and
# TestExports, which checks the release binaries.
SAN_DIR    = build/sanitize
# As LDLINUX, with symbols for the reports.
SAN_LDFLAGS = -X main.version=$(VERSION) -extldflags '-Wl,--version-script=$(CURDIR)/module/exports.map -Wl,-z,nodelete'
SAN_CFLAGS = -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer
sanitize: $(SAN_DIR)/gmsv_realtime_linux64.dll $(SAN_DIR)/host-luajit build/realtimectl
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 REALTIME_BUILD_DIR=$(CURDIR)/$(SAN_DIR) \
	  REALTIME_PREBUILT=1 REALTIME_RUNTIMES=luajit64 LUAFUZZ_STEPS=1000 LUAFUZZ_STEP_MS=2000 $(GO) test -count=1 -timeout 15m -skip 'TestExports' ./tests

$(SAN_DIR)/gmsv_realtime_linux64.dll: FORCE
	@mkdir -p $(SAN_DIR)
	CGO_ENABLED=1 CGO_CFLAGS="-O1 -g -funwind-tables -fno-omit-frame-pointer -fsanitize=undefined,float-cast-overflow -fno-sanitize-recover=all" \
	  CGO_LDFLAGS="-fsanitize=undefined,float-cast-overflow" $(GO) build -asan $(GOFLAGS_MOD) -ldflags "$(SAN_LDFLAGS)" -o $@ ./module
	@rm -f $(@:.dll=.h)

$(SAN_DIR)/host-luajit: tests/host/host.c
	@mkdir -p $(SAN_DIR)
	gcc $(HOST_CFLAGS) $(SAN_CFLAGS) -I/usr/include/luajit-2.1 -DLUA_SHARED='"$(LUAJIT64_SO)"' -o $@ $< -ldl

# The Go micro-benchmarks of the hot paths, then the end-to-end suite
# (tests/bench): the module in the host against a fresh redis-server per
# scenario, each figure beside a reference from the same run; the table is
# written to build/bench.md. SOAK=10m changes the soak's length.
bench: deps module hosts
	$(GO) test -run '^$$' -bench . -benchmem ./router/... ./module/...
	$(GO) run ./tests/bench

# Only the soak: SOAK=1h make bench-soak
bench-soak: deps module hosts
	$(GO) run ./tests/bench -only soak

# ---- The module ------------------------------------------------------------
# One Go c-shared library per GMod branch, named as GMod's require() looks for
# it in garrysmod/lua/bin/. build/realtime.so is the linux64 binary under the
# name plain LuaJIT's require("realtime") finds.
VERSION    ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
GOFLAGS_MOD = -buildmode=c-shared -trimpath
LDX         = -s -w -X main.version=$(VERSION)
# Linux: export only the entry points (module/exports.map) and never unload.
LDLINUX     = $(LDX) -extldflags '-Wl,--version-script=$(CURDIR)/module/exports.map -Wl,-z,nodelete'
# LuaJIT unwinds through the shim's frames on lua_error.
export CGO_CFLAGS = -O2 -g -funwind-tables

.PHONY: FORCE
module: build/gmsv_realtime_linux64.dll build/realtime.so
module-all: module build/gmsv_realtime_linux.dll build/gmsv_realtime_win64.dll build/gmsv_realtime_win32.dll

build/gmsv_realtime_linux64.dll: FORCE
	@mkdir -p build
	CGO_ENABLED=1 GOOS=linux GOARCH=amd64 $(GO) build $(GOFLAGS_MOD) -ldflags "$(LDLINUX)" -o $@ ./module
	@rm -f $(@:.dll=.h)

build/realtime.so: build/gmsv_realtime_linux64.dll
	cp $< $@

build/gmsv_realtime_linux.dll: FORCE
	@mkdir -p build
	CGO_ENABLED=1 GOOS=linux GOARCH=386 CC="gcc -m32" $(GO) build $(GOFLAGS_MOD) -ldflags "$(LDLINUX)" -o $@ ./module
	@rm -f $(@:.dll=.h)

build/gmsv_realtime_win64.dll: FORCE
	@mkdir -p build
	CGO_ENABLED=1 GOOS=windows GOARCH=amd64 CC=x86_64-w64-mingw32-gcc $(GO) build $(GOFLAGS_MOD) -ldflags "$(LDX)" -o $@ ./module
	@rm -f $(@:.dll=.h)

build/gmsv_realtime_win32.dll: FORCE
	@mkdir -p build
	CGO_ENABLED=1 GOOS=windows GOARCH=386 CC=i686-w64-mingw32-gcc $(GO) build $(GOFLAGS_MOD) -ldflags "$(LDX)" -o $@ ./module
	@rm -f $(@:.dll=.h)

# ---- The operator's tool (cmd/realtimectl) ------------------------------------
tools: build/realtimectl

build/realtimectl: FORCE
	@mkdir -p build
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $@ ./cmd/realtimectl

# ---- The GMod-like test host (tests/host) -------------------------------------
# The host links no Lua and exports nothing: like srcds it dlopens the
# runtime privately as bin/linux64/lua_shared.so (bin/linux32 for 32-bit),
# a link to the library named here, so the module must find the Lua API in
# lua_shared itself.
HOST_CFLAGS = -std=c11 -O2 -g -Wall -Wextra -Werror
LUAJIT64_SO = $(realpath $(shell gcc -print-file-name=libluajit-5.1.so.2))
LUAJIT32_SO = $(realpath $(shell gcc -m32 -print-file-name=libluajit-5.1.so.2))
LUA51_SO    = $(realpath $(shell gcc -print-file-name=liblua5.1.so.0))
hosts: build/host-luajit build/host-luajit32 build/host-lua51

build/host-luajit: tests/host/host.c
	@mkdir -p build
	gcc $(HOST_CFLAGS) -I/usr/include/luajit-2.1 -DLUA_SHARED='"$(LUAJIT64_SO)"' -o $@ $< -ldl

build/host-luajit32: tests/host/host.c
	@mkdir -p build
	gcc -m32 $(HOST_CFLAGS) -I/usr/include/luajit-2.1 -DLUA_SHARED='"$(LUAJIT32_SO)"' -o $@ $< -ldl

build/host-lua51: tests/host/host.c
	@mkdir -p build
	gcc $(HOST_CFLAGS) -I/usr/include/lua5.1 -DLUA_SHARED='"$(LUA51_SO)"' -o $@ $< -ldl

# ---- Windows, under Wine (make test only) -----------------------------------
# The Windows DLLs run in the same host, cross-built with mingw-w64 against
# LuaJIT 2.1.0-beta3 for Windows (Debian's own source package, cross-built
# here: `scripts/deps.sh test` installs Wine 8 and adds the deb-src line),
# under Wine in a private prefix. Everything is under build/wine and built
# once: the LuaJIT trees, the hosts, the prefix.
WINE_DIR     = build/wine
WINE_PREFIX  = $(CURDIR)/$(WINE_DIR)/prefix
# -all: Wine's own warnings (fixme:...) are not the module's output.
WINE_ENV     = WINEPREFIX=$(WINE_PREFIX) WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
MINGW_CFLAGS = -std=c11 -O2 -Wall -Wextra -Werror
# The 32-bit lua51.dll needs mingw's libgcc_s_dw2-1.dll; the win32-thread
# variant's, which needs no winpthread.
LIBGCC_DW2   = $(shell i686-w64-mingw32-gcc-win32 -print-file-name=libgcc_s_dw2-1.dll)

wine-hosts: $(WINE_DIR)/win64/host.exe $(WINE_DIR)/win32/host.exe $(WINE_DIR)/prefix/.ready
.PHONY: wine-hosts

$(WINE_DIR)/src/.stamp:
	@mkdir -p $(@D)
	@apt-cache showsrc luajit >/dev/null 2>&1 || { echo "no deb-src for luajit: run scripts/deps.sh test (as root)" >&2; exit 1; }
	cd $(@D) && rm -rf luajit-* && apt-get source -qq luajit
	touch $@

# lua51.dll and the headers: a copy of the source tree per architecture.
$(WINE_DIR)/luajit-win64/src/lua51.dll: $(WINE_DIR)/src/.stamp
	rm -rf $(WINE_DIR)/luajit-win64 && cp -r $(WINE_DIR)/src/luajit-*/ $(WINE_DIR)/luajit-win64
	$(MAKE) -s -C $(WINE_DIR)/luajit-win64 HOST_CC=gcc CROSS=x86_64-w64-mingw32- TARGET_SYS=Windows >/dev/null

$(WINE_DIR)/luajit-win32/src/lua51.dll: $(WINE_DIR)/src/.stamp
	rm -rf $(WINE_DIR)/luajit-win32 && cp -r $(WINE_DIR)/src/luajit-*/ $(WINE_DIR)/luajit-win32
	$(MAKE) -s -C $(WINE_DIR)/luajit-win32 HOST_CC="gcc -m32" CROSS=i686-w64-mingw32- TARGET_SYS=Windows >/dev/null

# The hosts load bin/win64/lua_shared.dll (garrysmod/bin/lua_shared.dll),
# a copy of lua51.dll. libgcc_s_dw2-1.dll sits beside the 32-bit host: the
# loader looks for a DLL's DLLs in the application's directory.
$(WINE_DIR)/win64/host.exe: tests/host/host.c $(WINE_DIR)/luajit-win64/src/lua51.dll
	@mkdir -p $(@D)
	x86_64-w64-mingw32-gcc $(MINGW_CFLAGS) -I$(WINE_DIR)/luajit-win64/src \
	  -DLUA_SHARED='"$(CURDIR)/$(WINE_DIR)/luajit-win64/src/lua51.dll"' -o $@ $< -lws2_32

$(WINE_DIR)/win32/host.exe: tests/host/host.c $(WINE_DIR)/luajit-win32/src/lua51.dll
	@mkdir -p $(@D)
	i686-w64-mingw32-gcc $(MINGW_CFLAGS) -I$(WINE_DIR)/luajit-win32/src \
	  -DLUA_SHARED='"$(CURDIR)/$(WINE_DIR)/luajit-win32/src/lua51.dll"' -o $@ $< -lws2_32
	cp $(LIBGCC_DW2) $(@D)/

$(WINE_DIR)/win64/bcryptprimitives.dll: tests/host/bcryptprimitives.c
	@mkdir -p $(@D)
	x86_64-w64-mingw32-gcc $(MINGW_CFLAGS) -shared -o $@ $< -ladvapi32

$(WINE_DIR)/win32/bcryptprimitives.dll: tests/host/bcryptprimitives.c
	@mkdir -p $(@D)
	i686-w64-mingw32-gcc $(MINGW_CFLAGS) -shared -Wl,--kill-at -o $@ $< -ladvapi32

# The prefix: a 64-bit one (system32 is 64-bit, syswow64 32-bit) with the
# ProcessPrng stand-in, which Go loads only from the system directory.
$(WINE_DIR)/prefix/.ready: $(WINE_DIR)/win64/bcryptprimitives.dll $(WINE_DIR)/win32/bcryptprimitives.dll
	rm -rf $(WINE_PREFIX)
	$(WINE_ENV) wineboot -i >/dev/null 2>&1
	$(WINE_ENV) wineserver -w
	cp $(WINE_DIR)/win64/bcryptprimitives.dll $(WINE_PREFIX)/drive_c/windows/system32/
	cp $(WINE_DIR)/win32/bcryptprimitives.dll $(WINE_PREFIX)/drive_c/windows/syswow64/
	touch $@

# Runs the module in the host against a throwaway redis-server with the
# example config and addon (tests/demo).
demo: deps module build/host-luajit build/realtimectl
	$(GO) run ./tests/demo
