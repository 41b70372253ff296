package config

import (
	"bytes"
	"unicode"
)

// dotenvProblem finds the statement that godotenv (v1.5, the .env parser
// koanf uses) refuses, by godotenv's own scan, and says what is wrong with
// it, quoting nothing from the file: a .env holds secrets. line is 1-based;
// problem is "" when the scan finds nothing wrong.
func dotenvProblem(src []byte) (line int, problem string) {
	src = bytes.ReplaceAll(src, []byte("\r\n"), []byte("\n"))
	lineOf := func(off int) int { return 1 + bytes.Count(src[:off], []byte("\n")) }
	off := 0
	for {
		// Skip blank space and comment lines to the next statement.
		for {
			i := bytes.IndexFunc(src[off:], func(r rune) bool { return !unicode.IsSpace(r) })
			if i < 0 {
				return 0, ""
			}
			off += i
			if src[off] != '#' {
				break
			}
			j := bytes.IndexByte(src[off:], '\n')
			if j < 0 {
				return 0, ""
			}
			off += j
		}
		start := off
		if rest := src[off:]; bytes.HasPrefix(rest, []byte("export")) {
			if t := rest[len("export"):]; bytes.IndexFunc(t, dotenvSpace) == 0 {
				off = len(src) - len(bytes.TrimLeftFunc(t, dotenvSpace))
			}
		}
		// The variable name, up to = or :.
		value := -1
		for i, c := range src[off:] {
			r := rune(c)
			switch {
			case dotenvSpace(r) || c == '_' || c == '.' || unicode.IsLetter(r) || unicode.IsNumber(r):
				continue
			case c == '=' || c == ':':
				value = off + i + 1
			case c == '\n':
				return lineOf(off + i), "a line with no = (want NAME=value)"
			case c == '"' || c == '\'':
				return lineOf(off + i), "a quote in a variable name (want NAME=value; quotes go around the value)"
			default:
				return lineOf(off + i), "a variable name may hold only letters, digits, _ and . (found " + describeByte(c) + ")"
			}
			break
		}
		if value < 0 { // a name running to the end of the file: godotenv takes it
			return 0, ""
		}
		off = len(src) - len(bytes.TrimLeftFunc(src[value:], dotenvSpace))
		if off < len(src) && (src[off] == '"' || src[off] == '\'') {
			q, end := src[off], -1
			for i := off + 1; i < len(src); i++ {
				if src[i] == q && src[i-1] != '\\' {
					end = i
					break
				}
			}
			if end < 0 {
				return lineOf(start), "the value's opening quote has no closing quote"
			}
			off = end + 1
			continue
		}
		if i := bytes.IndexAny(src[off:], "\r\n"); i >= 0 {
			off += i
		} else {
			off = len(src)
		}
	}
}

// describeByte names a character that may not be in a variable name.
func describeByte(c byte) string {
	if c > ' ' && c < 0x7f {
		return "the character '" + string(c) + "'"
	}
	return "a control or non-ASCII byte"
}

// dotenvSpace is godotenv's isSpace: blank space that is not a line break.
func dotenvSpace(r rune) bool {
	switch r {
	case '\t', '\v', '\f', '\r', ' ', 0x85, 0xA0:
		return true
	}
	return false
}
