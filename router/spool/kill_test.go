package spool

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// childEnv names the spool path the re-executed test binary writes to.
const childEnv = "SPOOL_KILL_CHILD"

// killChild Adds entries in batches of random size. Before each Sync it
// prints "added <id>" with the batch's last ID; after it, "synced <id>
// <payload>" for each entry: a promise that the entry survives kill -9. It
// runs until killed (bounded in count and time).
func killChild(path string) int {
	s, err := Open(path, Options{ServerID: "srv1"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	run := os.Getenv("SPOOL_KILL_RUN")
	deadline := time.Now().Add(60 * time.Second)
	var out strings.Builder
	for i := 0; i < 1_000_000 && time.Now().Before(deadline); {
		out.Reset()
		n := 1 + rand.IntN(64)
		var last string
		for j := 0; j < n; j, i = j+1, i+1 {
			payload := fmt.Sprintf("run%s-%d", run, i)
			id, err := s.Add(fmt.Sprintf("s%d", i%3), []byte(payload))
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Fprintf(&out, "synced %s %s\n", id, payload)
			last = id
		}
		os.Stdout.WriteString("added " + last + "\n")
		if err := s.Sync(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.Stdout.WriteString(out.String())
	}
	return 0
}

// TestKill9 kills a process that is Adding with SIGKILL at a random point,
// three times over: every entry it reported as synced is still there, in
// order, and the IDs after each restart are above every ID handed out
// before, committed or not.
func TestKill9(t *testing.T) {
	seed := testSeed()
	t.Logf("seed %d (SPOOL_SEED=%d replays the kill points)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	path := filepath.Join(t.TempDir(), "spool.db")
	type line struct{ id, payload string }
	var synced []line
	var handedOut int64 // the highest sequence a child's Add returned
	for run := 0; run < 3; run++ {
		killAfter := 1 + rng.IntN(3000)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+path, fmt.Sprintf("SPOOL_KILL_RUN=%d", run))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 2 && f[0] == "added" {
				_, seq, ok := ParseID(f[1])
				require.True(t, ok, f[1])
				handedOut = max(handedOut, seq)
				continue
			}
			require.Len(t, f, 3)
			require.Equal(t, "synced", f[0])
			synced = append(synced, line{f[1], f[2]})
			if n++; n == killAfter {
				require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			}
		}
		err = cmd.Wait()
		require.Error(t, err, "the child must have been killed, after %d lines", n)
		t.Logf("run %d: killed after %d synced lines (asked %d)", run, n, killAfter)

		s, err := Open(path, Options{ServerID: "srv1"})
		require.NoError(t, err)
		got := peekAll(t, s)
		byID := map[string]Entry{}
		for i, e := range got {
			byID[e.ID] = e
			if i > 0 {
				require.Greater(t, e.Seq, got[i-1].Seq, "the spool holds increasing sequences")
			}
		}
		last := int64(-1)
		for _, l := range synced {
			e, ok := byID[l.id]
			require.True(t, ok, "synced entry %s lost", l.id)
			assert.Equal(t, l.payload, string(e.Payload))
			require.Greater(t, e.Seq, last, "entry %s out of order", l.id)
			last = e.Seq
		}
		id, err := s.Add("s0", []byte("probe"))
		require.NoError(t, err)
		require.NoError(t, s.Sync())
		probe := peekAll(t, s)
		assert.Equal(t, id, probe[len(probe)-1].ID)
		assert.Greater(t, probe[len(probe)-1].Seq, got[len(got)-1].Seq, "new IDs continue past the old ones")
		assert.Greater(t, probe[len(probe)-1].Seq, handedOut, "new IDs continue past those the killed process handed out")
		handedOut = probe[len(probe)-1].Seq
		synced = append(synced, line{id, "probe"})
		require.NoError(t, s.Close())
	}
}
