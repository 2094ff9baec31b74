// Command yamux-peer is the Go end of Tower's interop test with
// github.com/hashicorp/yamux (test/e2e/yamux-interop.test.ts; built by
// test/e2e/tools/yamux-peer.sh).
//
// It listens on -listen (default 127.0.0.1, port 0), prints "listening PORT"
// on stdout, takes one TCP connection and runs a yamux session on it as the
// client (odd stream IDs) or the server (even IDs), as -mode says. It serves
// every stream the other end opens: the stream's first line is a command.
//
//	echo              copy everything back; FIN after the peer's FIN
//	sha256            read to the peer's FIN, then answer "BYTES HEX" and FIN
//	source N          answer "HEX" (sha256 of what follows), N random bytes
//	                  and FIN; then keep reading to the peer's FIN and keep
//	                  "BYTES HEX" of that for "result"
//	result ID         answer what "source" on stream ID read after its FIN
//	open COUNT SIZE   open COUNT streams to the peer at once; on each, send
//	                  SIZE random bytes and FIN, read the echo to its FIN and
//	                  compare sha256; answer "ok COUNT" or "error ..."
//	ping              ping the peer; answer "ok NANOSECONDS" or "error ..."
//	goaway            send GoAway(normal); answer "ok"
//	probe             wait for a line, then try to open a stream; answer
//	                  "refused ERROR" or "opened ID"
//	streams           answer how many streams the session holds (this one too)
//
// When the session ends it prints "closed REASON" and exits 0. yamux's own
// log goes to stderr. It exits 3 after -timeout, so a test that hangs never
// leaves it behind.
package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// maxChunk bounds each write, so payloads cross many frame sizes.
const maxChunk = 64 * 1024

// resultWait is how long "result" waits for its "source" stream to finish.
const resultWait = 60 * time.Second

type peer struct {
	sess *yamux.Session

	mu      sync.Mutex
	results map[uint32]string
	changed chan struct{} // closed and replaced whenever results changes
}

func main() {
	mode := flag.String("mode", "", "session role: client or server")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	timeout := flag.Duration("timeout", 5*time.Minute, "exit with status 3 after this long")
	flag.Parse()
	if *mode != "client" && *mode != "server" {
		fmt.Fprintln(os.Stderr, "yamux-peer: -mode must be client or server")
		os.Exit(2)
	}
	time.AfterFunc(*timeout, func() {
		fmt.Fprintf(os.Stderr, "yamux-peer: timed out after %s\n", *timeout)
		os.Exit(3)
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "yamux-peer: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("listening %d\n", ln.Addr().(*net.TCPAddr).Port)
	conn, err := ln.Accept()
	if err != nil {
		fmt.Fprintf(os.Stderr, "yamux-peer: accept: %v\n", err)
		os.Exit(1)
	}
	ln.Close()

	cfg := yamux.DefaultConfig()
	cfg.LogOutput = os.Stderr
	// Tower's acceptBacklog (SESSION_DEFAULTS): with yamux's default of 256,
	// a burst of more SYNs than that is reset before the accept loop runs.
	cfg.AcceptBacklog = 1024
	var sess *yamux.Session
	if *mode == "client" {
		sess, err = yamux.Client(conn, cfg)
	} else {
		sess, err = yamux.Server(conn, cfg)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "yamux-peer: %v\n", err)
		os.Exit(1)
	}
	p := &peer{sess: sess, results: map[uint32]string{}, changed: make(chan struct{})}
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			fmt.Printf("closed %v\n", err)
			os.Exit(0)
		}
		go p.serve(st)
	}
}

// serve runs the command on the first line of st.
func (p *peer) serve(st *yamux.Stream) {
	r := bufio.NewReader(st)
	line, err := r.ReadString('\n')
	if err != nil {
		st.Close()
		return
	}
	args := strings.Fields(line)
	if len(args) == 0 {
		answer(st, "error empty command")
		return
	}
	switch args[0] {
	case "echo":
		_, err := io.Copy(st, r)
		if err != nil {
			fmt.Fprintf(os.Stderr, "yamux-peer: echo on %d: %v\n", st.StreamID(), err)
		}
		st.Close()
	case "sha256":
		n, sum, err := digest(r)
		if err != nil {
			answer(st, "error "+err.Error())
			return
		}
		answer(st, fmt.Sprintf("%d %s", n, sum))
	case "source":
		n, err := intArg(args, 1)
		if err != nil {
			answer(st, "error "+err.Error())
			return
		}
		p.source(st, r, n)
	case "result":
		id, err := intArg(args, 1)
		if err != nil {
			answer(st, "error "+err.Error())
			return
		}
		answer(st, p.result(uint32(id)))
	case "open":
		count, err1 := intArg(args, 1)
		size, err2 := intArg(args, 2)
		if err := errors.Join(err1, err2); err != nil {
			answer(st, "error "+err.Error())
			return
		}
		answer(st, p.open(count, size))
	case "ping":
		rtt, err := p.sess.Ping()
		if err != nil {
			answer(st, "error "+err.Error())
			return
		}
		answer(st, fmt.Sprintf("ok %d", rtt.Nanoseconds()))
	case "goaway":
		if err := p.sess.GoAway(); err != nil {
			answer(st, "error "+err.Error())
			return
		}
		answer(st, "ok")
	case "probe":
		if _, err := r.ReadString('\n'); err != nil {
			answer(st, "error "+err.Error())
			return
		}
		opened, err := p.sess.OpenStream()
		if err != nil {
			answer(st, "refused "+err.Error())
			return
		}
		opened.Close()
		answer(st, fmt.Sprintf("opened %d", opened.StreamID()))
	case "streams":
		answer(st, strconv.Itoa(p.sess.NumStreams()))
	default:
		answer(st, "error unknown command "+strconv.Quote(args[0]))
	}
}

// answer writes one line and half-closes st.
func answer(st *yamux.Stream, line string) {
	if _, err := io.WriteString(st, line+"\n"); err != nil {
		fmt.Fprintf(os.Stderr, "yamux-peer: answer on %d: %v\n", st.StreamID(), err)
	}
	st.Close()
}

func intArg(args []string, i int) (int, error) {
	if len(args) <= i {
		return 0, fmt.Errorf("%s: missing argument %d", args[0], i)
	}
	n, err := strconv.Atoi(args[i])
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: bad number %q", args[0], args[i])
	}
	return n, nil
}

// digest reads r to its end and returns the byte count and sha256 as hex.
func digest(r io.Reader) (int64, string, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// source sends its sha256 line, n random bytes and FIN, then reads the rest
// of what the peer sends after that FIN and records it for "result".
func (p *peer) source(st *yamux.Stream, r io.Reader, n int) {
	seed := newSeed()
	h := sha256.New()
	if err := generate(seed, n, h); err != nil {
		answer(st, "error "+err.Error())
		return
	}
	if _, err := io.WriteString(st, hex.EncodeToString(h.Sum(nil))+"\n"); err != nil {
		st.Close()
		return
	}
	if err := generate(seed, n, st); err != nil {
		fmt.Fprintf(os.Stderr, "yamux-peer: source on %d: %v\n", st.StreamID(), err)
	}
	st.Close()
	got, sum, err := digest(r)
	record := fmt.Sprintf("%d %s", got, sum)
	if err != nil {
		record = "error " + err.Error()
	}
	p.mu.Lock()
	p.results[st.StreamID()] = record
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

func (p *peer) result(id uint32) string {
	deadline := time.After(resultWait)
	for {
		p.mu.Lock()
		record, ok := p.results[id]
		changed := p.changed
		p.mu.Unlock()
		if ok {
			return record
		}
		select {
		case <-changed:
		case <-deadline:
			return fmt.Sprintf("error no source result for stream %d", id)
		}
	}
}

// open runs COUNT concurrent echo round trips over streams this end opens.
func (p *peer) open(count, size int) string {
	var wg sync.WaitGroup
	errs := make(chan error, count)
	for i := 0; i < count; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.roundTrip(size); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Sprintf("error %d of %d failed, first: %v", len(errs)+1, count, err)
	}
	return fmt.Sprintf("ok %d", count)
}

func (p *peer) roundTrip(size int) error {
	st, err := p.sess.OpenStream()
	if err != nil {
		return err
	}
	defer st.Close()
	sent := sha256.New()
	writeErr := make(chan error, 1)
	go func() {
		err := generate(newSeed(), size, io.MultiWriter(st, sent))
		if err == nil {
			err = st.Close()
		}
		writeErr <- err
	}()
	got, sum, err := digest(st)
	if err != nil {
		return fmt.Errorf("stream %d: read: %w", st.StreamID(), err)
	}
	if err := <-writeErr; err != nil {
		return fmt.Errorf("stream %d: write: %w", st.StreamID(), err)
	}
	if want := hex.EncodeToString(sent.Sum(nil)); got != int64(size) || sum != want {
		return fmt.Errorf("stream %d: echo of %d bytes came back as %d bytes, sha256 %s, want %s", st.StreamID(), size, got, sum, want)
	}
	return nil
}

func newSeed() [32]byte {
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		panic(err)
	}
	return seed
}

// generate writes n pseudo-random bytes derived from seed to w, in chunks of
// random size up to maxChunk; the same seed gives the same bytes.
func generate(seed [32]byte, n int, w io.Writer) error {
	data := mrand.NewChaCha8(seed)
	sizes := mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), 1))
	buf := make([]byte, maxChunk)
	for n > 0 {
		k := min(n, 1+sizes.IntN(maxChunk))
		data.Read(buf[:k])
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
