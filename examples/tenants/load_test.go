//go:build loadtest

// The figures of issue 12 item 4, measured once, not in CI:
//
//	go test -tags loadtest -run TestLoad -v -timeout 20m ./examples/tenants
//
// LOAD_IDLE and LOAD_STREAMS change the numbers (default 20000 and 4000),
// LOAD_MAX_CONNS the server's -max-conns (0 shows the server without the
// connection limiter). The client connections are spread over child
// processes and source addresses: a process may hold fewer files than the
// test needs, and loopback has about 28,000 ports per source address.

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// TestLoadClient is a child process of TestLoad: it opens its share of
// connections, says READY, holds them until its stdin closes, then says
// how many of its idle connections the server had closed.
func TestLoadClient(t *testing.T) {
	addr := os.Getenv("LOAD_ADDR")
	if addr == "" {
		t.Skip("a child process of TestLoad")
	}
	src, path, n := os.Getenv("LOAD_SRC"), os.Getenv("LOAD_PATH"), envInt("LOAD_N", 0)
	prefix := os.Getenv("LOAD_USER_PREFIX")
	conns := make([]*rawConn, 0, n)
	for i := range n {
		c, err := tryRequestFrom(src, addr, path, fmt.Sprint(prefix, i))
		if err != nil {
			fmt.Printf("FAILED after %d: %v\n", i, err)
			return
		}
		conns = append(conns, c)
	}
	fmt.Printf("READY %d\n", len(conns))
	_, _ = io.Copy(io.Discard, os.Stdin)
	closed := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.r.ReadByte(); err == io.EOF {
			closed++
		}
	}
	fmt.Printf("CLOSED %d\n", closed)
}

type loadChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startLoadChild(t *testing.T, addr, src, path, userPrefix string, n int) *loadChild {
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadClient$", "-test.v")
	cmd.Env = append(os.Environ(), "LOAD_ADDR="+addr, "LOAD_SRC="+src, "LOAD_PATH="+path,
		"LOAD_USER_PREFIX="+userPrefix, fmt.Sprint("LOAD_N=", n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &loadChild{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return c
}

// line waits for the child's next line starting with one of the words.
func (c *loadChild) line(t *testing.T, words ...string) string {
	for c.out.Scan() {
		l := c.out.Text()
		for _, w := range words {
			if strings.HasPrefix(l, w) {
				return l
			}
		}
	}
	t.Fatalf("child ended without %v", words)
	return ""
}

// probeLatencies times n new clients, one after the other.
func probeLatencies(t *testing.T, addr string, n int) (p50, max time.Duration) {
	var ds []time.Duration
	for i := range n {
		start := time.Now()
		c, err := tryRequestFrom("127.0.0.9", addr, "/api/durably/runs?limit=1", fmt.Sprint("probe-", i))
		d := time.Since(start)
		if err != nil {
			t.Fatalf("new client %d after %v: %v", i, d, err)
		}
		c.Close()
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], ds[len(ds)-1]
}

func rssMiB(t *testing.T, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}

func TestLoad(t *testing.T) {
	idle, streams := envInt("LOAD_IDLE", 20000), envInt("LOAD_STREAMS", 4000)
	flags := []string{}
	if v := os.Getenv("LOAD_MAX_CONNS"); v != "" {
		flags = append(flags, "-max-conns", v)
	}
	addr, pid, logs := startTenants(t, fdLimit(), flags...)
	t.Logf("server: open-files limit %d; %s", fdLimit(), firstLine(logs.String(), "tenants: serving"))
	t.Logf("idle server: RSS %.0f MiB", rssMiB(t, pid))

	// Idle keep-alive connections, 10,000 per child and source address.
	var children []*loadChild
	for i, left := 0, idle; left > 0; i++ {
		n := min(left, 10000)
		children = append(children, startLoadChild(t, addr, fmt.Sprintf("127.0.0.%d", 2+i), "/healthz", fmt.Sprintf("idle%d-", i), n))
		left -= n
	}
	start := time.Now()
	for _, c := range children {
		if l := c.line(t, "READY", "FAILED"); !strings.HasPrefix(l, "READY") {
			t.Fatalf("idle connections: %s\n%s", l, tail(logs.String()))
		}
	}
	t.Logf("%d idle keep-alive connections opened in %v; server RSS %.0f MiB", idle, time.Since(start).Round(time.Millisecond), rssMiB(t, pid))
	p50, worst := probeLatencies(t, addr, 20)
	t.Logf("new clients with %d idle connections: p50 %v, max %v", idle, p50, worst)

	// Event streams, one user each, from one more child.
	start = time.Now()
	sc := startLoadChild(t, addr, "127.0.0.8", "/api/durably/runs/subscribe", "user-", streams)
	if l := sc.line(t, "READY", "FAILED"); !strings.HasPrefix(l, "READY") {
		t.Fatalf("streams: %s\n%s", l, tail(logs.String()))
	}
	t.Logf("%d event streams opened in %v; server RSS %.0f MiB", streams, time.Since(start).Round(time.Millisecond), rssMiB(t, pid))
	p50, worst = probeLatencies(t, addr, 20)
	t.Logf("new clients with %d idle connections and %d streams: p50 %v, max %v", idle, streams, p50, worst)

	for i, c := range append(children, sc) {
		_ = c.stdin.Close()
		t.Logf("child %d: %s of its connections closed by the server", i, strings.TrimPrefix(c.line(t, "CLOSED"), "CLOSED "))
	}
	t.Logf("server log: %s", firstLine(logs.String(), "closing the longest-idle"))
}

func firstLine(s, containing string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, containing) {
			return l
		}
	}
	return "(none)"
}

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}
