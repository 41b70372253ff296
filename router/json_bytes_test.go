package router

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestJSONTapeIsSizedByStructureNotStringContent: commas and colons inside
// strings do not reserve tape (1 MiB of commas reserved 32 MiB).
func TestJSONTapeIsSizedByStructureNotStringContent(t *testing.T) {
	s := `{"a":"` + strings.Repeat(",:[{", 1<<18) + `","b":[1,2]}`
	doc, err := ParseJSON(s, 64)
	require.NoError(t, err)
	assert.Equal(t, 7, len(doc.Nodes))
	assert.LessOrEqual(t, cap(doc.Nodes), 8, "the tape reserved for a string full of , : [ {")
	assert.Equal(t, int64(cap(doc.Nodes))*nodeSize, doc.Bytes)

	doc, err = ParseJSON(`["\u00e9\n", "plain", "a\"b"]`, 64)
	require.NoError(t, err)
	assert.Equal(t, int64(cap(doc.Nodes))*nodeSize+int64(len("é\n")+len(`a"b`)), doc.Bytes, "decoded strings count; plain ones share the payload")
}

// TestQueueBoundsTheParsedJSON: a JSON route's event counts its tape
// against queue.max_bytes: a small payload of many numbers whose tape
// would exceed the bound is not kept.
func TestQueueBoundsTheParsedJSON(t *testing.T) {
	r, err := New(parseConfig(t, `
[queue]
max_bytes = "64KiB"
max_payload = "32KiB"
[[routes]]
name = "j"
channel = "j"
handler = "h"
decode = "json"
[[routes]]
name = "raw"
channel = "j"
handler = "h"
`))
	require.NoError(t, err)
	payload := "[" + strings.Repeat("1,", 4000) + "1]" // 8 KiB, 4,002 nodes: 128 KiB of tape
	r.Deliver("j", payload)
	assert.LessOrEqual(t, r.Queue().Bytes(), int64(64<<10))
	assert.Equal(t, []string{"raw<-j"}, drainAll(r), "the raw copy fits; the parsed one cannot")
	assert.Equal(t, uint64(1), r.Stats.Dropped()[DropQueueFull])

	small := "[" + strings.Repeat("1,", 100) + "1]"
	r.Deliver("j", small)
	r.Deliver("j", small)
	doc, err := ParseJSON(small, 64)
	require.NoError(t, err)
	assert.Equal(t, 2*(int64(len(small)+1)+doc.Bytes), r.Queue().Bytes(), "each message and its tape once, for two routes")
}
