package config

import (
	"math/rand/v2"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedactURLAgainstParseURL: for URLs generated from pieces (seed
// logged), whenever go-redis's ParseURL would send a password, or a user
// name alone (maybe a password missing its ':'), RedactURL's text does not
// hold it, neither as written nor percent-decoded; nor does the loader's
// error for it, or its Config.String and Redis.Target.
func TestRedactURLAgainstParseURL(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	schemes := []string{"redis://", "rediss://", "unix://", "REDIS://", "redis:/", "redis:", "redis:///"}
	pieces := []string{"USMARK", "PWMARK", "%50WMARK", "U%53MARK", ":", ":", "@", "@", "/", "/0", "?", "#",
		"client_name=", "&", "host", "127.0.0.1", ":6379", "[::1]", "%40", "%3A", "db=1", "a", "=", "protocol=2"}
	mark := regexp.MustCompile(`(US|PW)MARK[0-9]+X`)
	const n = 100000
	leaks := 0
	for range n {
		var b strings.Builder
		b.WriteString(schemes[rng.IntN(len(schemes))])
		for k := range 1 + rng.IntN(9) {
			// each marker its own, so that one in the host is not taken
			// for the user's
			b.WriteString(strings.Replace(pieces[rng.IntN(len(pieces))], "MARK", "MARK"+strconv.Itoa(k)+"X", 1))
		}
		raw := b.String()
		opt, err := redis.ParseURL(raw)
		if err != nil {
			continue
		}
		red := RedactURL(raw)
		dec, err := url.PathUnescape(red)
		if err != nil {
			dec = red
		}
		shows := func(secret string) bool {
			for _, m := range mark.FindAllString(secret, -1) {
				if strings.Contains(red, m) || strings.Contains(dec, m) {
					return true
				}
			}
			return false
		}
		u, _ := url.Parse(raw)
		_, hasPassword := u.User.Password()
		switch {
		case shows(opt.Password),
			!hasPassword && shows(opt.Username):
			leaks++
			if leaks <= 5 {
				t.Errorf("RedactURL(%q) = %q: ParseURL uses user %q, password %q (seed %d)", raw, red, opt.Username, opt.Password, seed)
			}
			continue
		}
		// what the config loader says about it, or shows of it
		var said string
		if cfg, err := Parse("t.toml", []byte("[redis]\nurl = "+strconv.Quote(raw)+"\n")); err != nil {
			said = err.Error()
		} else {
			said = cfg.String() + "\n" + cfg.Redis.Target()
		}
		red, dec = said, said
		if d, err := url.PathUnescape(said); err == nil {
			dec = d
		}
		if shows(opt.Password) || (!hasPassword && shows(opt.Username)) {
			leaks++
			if leaks <= 5 {
				t.Errorf("url = %q: the loader says %q (seed %d)", raw, said, seed)
			}
		}
	}
	if leaks > 0 {
		t.Errorf("%d of %d URLs leaked", leaks, n)
	}
}
