package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as "2ms", "5s", "1m30s".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText parses a Go duration; negative values are rejected.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration (want a value such as \"2ms\", \"5s\" or \"1m\")", b)
	}
	*d = Duration(v)
	return nil
}

// Size is a byte count written as "8MiB", "512KiB", "1MB" or a plain number
// of bytes.
type Size int64

// Byte sizes.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
)

var sizeUnits = []struct {
	suffix string
	mult   Size
}{ // longest suffixes first
	{"kib", KiB}, {"mib", MiB}, {"gib", GiB},
	{"kb", 1000}, {"mb", 1000 * 1000}, {"gb", 1000 * 1000 * 1000},
	{"k", KiB}, {"m", MiB}, {"g", GiB}, {"b", 1},
}

func (s Size) String() string {
	for _, u := range []struct {
		suffix string
		mult   Size
	}{{"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}} {
		if s >= u.mult && s%u.mult == 0 {
			return strconv.FormatInt(int64(s/u.mult), 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// UnmarshalText parses a size. Units are case-insensitive: B, KiB/MiB/GiB
// (and K/M/G) are powers of 1024, KB/MB/GB powers of 1000.
func (s *Size) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	bad := fmt.Errorf("%q is not a size (want bytes or a value such as \"512KiB\", \"8MiB\")", b)
	num, mult := strings.ToLower(text), Size(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f*float64(mult) > math.MaxInt64/2 {
		return bad
	}
	v := f * float64(mult)
	if v != math.Trunc(v) {
		return fmt.Errorf("%q is not a whole number of bytes", b)
	}
	*s = Size(v)
	return nil
}

// Rate is an events-per-time limit for a token bucket: "200/s", "50/m",
// "1000/h", or "unlimited". The zero value is unlimited.
type Rate struct {
	// PerSecond is the sustained rate; 0 means unlimited.
	PerSecond float64
	text      string
}

// Unlimited reports whether the rate imposes no limit.
func (r Rate) Unlimited() bool { return r.PerSecond == 0 }

func (r Rate) String() string {
	switch {
	case r.text != "":
		return r.text
	case r.Unlimited():
		return "unlimited"
	}
	return strconv.FormatFloat(r.PerSecond, 'g', -1, 64) + "/s"
}

// DefaultBurst is the bucket size used when a route sets none: one second's
// worth of events, at least 1 and at most 2^31-1 (a rate so high is as
// good as unlimited, and the count must not wrap).
func (r Rate) DefaultBurst() int {
	if r.Unlimited() {
		return 0
	}
	return int(math.Min(math.MaxInt32, math.Max(1, math.Ceil(r.PerSecond))))
}

var rateUnits = map[string]float64{"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600}

// UnmarshalText parses a rate.
func (r *Rate) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	if strings.EqualFold(text, "unlimited") {
		*r = Rate{}
		return nil
	}
	num, unit, ok := strings.Cut(text, "/")
	per, known := rateUnits[strings.ToLower(strings.TrimSpace(unit))]
	if !ok || !known {
		return fmt.Errorf("%q is not a rate (want N/s, N/m or N/h, or \"unlimited\")", b)
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
		return fmt.Errorf("%q is not a rate (want N/s, N/m or N/h, or \"unlimited\")", b)
	}
	if n <= 0 {
		return fmt.Errorf("%q must allow more than 0 events (use \"unlimited\" for no limit)", b)
	}
	*r = Rate{PerSecond: n / per, text: text}
	return nil
}
