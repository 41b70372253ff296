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

// killChild Adds entries in batches of random size and, after each Sync,
// prints "<id> <payload>" for each: a printed line is a promise that the
// entry survives kill -9. It runs until killed (bounded in count and time).
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
		for j := 0; j < n; j, i = j+1, i+1 {
			payload := fmt.Sprintf("run%s-%d", run, i)
			id, err := s.Add(fmt.Sprintf("s%d", i%3), []byte(payload))
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Fprintf(&out, "%s %s\n", id, payload)
		}
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
// order, and the IDs go on increasing after each restart.
func TestKill9(t *testing.T) {
	seed := testSeed()
	t.Logf("seed %d (SPOOL_SEED=%d replays the kill points)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	path := filepath.Join(t.TempDir(), "spool.db")
	type line struct{ id, payload string }
	var synced []line
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
			require.Len(t, f, 2)
			synced = append(synced, line{f[0], f[1]})
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
				require.Equal(t, got[i-1].Seq+1, e.Seq, "the spool holds a gap-free run of sequences")
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
		synced = append(synced, line{id, "probe"})
		require.NoError(t, s.Close())
	}
}
