package config

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// decode copies the merged map onto cfg (which holds the defaults), checking
// every key against the `koanf` tags so that unknown keys and wrong types are
// reported with their path instead of silently ignored.
func (l *loader) decode(cfg *Config) {
	l.decodeStruct("", l.k.Raw(), reflect.ValueOf(cfg).Elem())
}

func (l *loader) decodeStruct(path string, m map[string]any, v reflect.Value) {
	fields := map[string]reflect.Value{}
	var names []string
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("koanf")
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = v.Field(i)
		names = append(names, tag)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := join(path, k)
		f, ok := fields[k]
		if !ok {
			l.fail(p, "unknown key%s", suggest(k, names))
			continue
		}
		l.decodeValue(p, m[k], f)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func (l *loader) decodeValue(path string, raw any, v reflect.Value) {
	show := func() string { return describe(path, raw) }
	if v.Addr().Type().Implements(textUnmarshaler) {
		s, isString := raw.(string)
		if !isString {
			if n, ok := asInt(raw); ok && v.Type() == reflect.TypeFor[Size]() && n >= 0 {
				v.SetInt(n)
				return
			}
			s = fmt.Sprint(raw) // let UnmarshalText explain what it wants
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			l.fail(path, "%s", err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			l.fail(path, "%s is not a string (put it in quotes)", show())
			return
		}
		v.SetString(s)
	case reflect.Int:
		n, ok := asInt(raw)
		if !ok || v.OverflowInt(n) {
			l.fail(path, "%s is not a whole number", show())
			return
		}
		v.SetInt(n)
	case reflect.Bool:
		b, ok := asBool(raw)
		if !ok {
			l.fail(path, "%s is not true or false", show())
			return
		}
		v.SetBool(b)
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			l.fail(path, "%s is not a table (write [%s])", show(), path)
			return
		}
		l.decodeStruct(path, m, v)
	case reflect.Slice:
		items, ok := raw.([]any)
		if !ok {
			if v.Type().Elem().Kind() == reflect.Struct {
				l.fail(path, "%s is not an array of tables (write [[%s]])", show(), path)
			} else {
				l.fail(path, "%s is not an array (write [\"a\", \"b\"])", show())
			}
			return
		}
		out := reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, item := range items {
			l.decodeValue(fmt.Sprintf("%s[%d]", path, i), item, out.Index(i))
		}
		v.Set(out)
	default:
		panic("config: no decoder for " + v.Type().String())
	}
}

// describe quotes a value the way the user wrote it, for error messages,
// hiding passwords.
func describe(path string, v any) string {
	if strings.HasSuffix(path, "password") {
		return "(secret)"
	}
	switch x := v.(type) {
	case string:
		// A URL anywhere (say redis = "redis://u:pw@h", where the [redis]
		// table belongs) may hold a password.
		if strings.HasSuffix(path, "url") || strings.Contains(x, "://") || strings.Contains(x, "@") {
			return strconv.Quote(RedactURL(x))
		}
		return strconv.Quote(x)
	case map[string]any:
		return "a table"
	case []any:
		return "an array"
	}
	return fmt.Sprint(v)
}

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int:
		return int64(x), true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x), true
		}
	case string: // environment variables
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func asBool(v any) (bool, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case string: // environment variables
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "1", "true", "yes", "on":
			return true, true
		case "0", "false", "no", "off":
			return false, true
		}
	}
	return false, false
}
