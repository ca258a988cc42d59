package fetch

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// progress draws one line on a terminal: the image, the layer being fetched and a bar of the bytes received
// against the total of the layers' sizes (the manifest gives them). A nil writer draws nothing.
type progress struct {
	w     io.Writer
	ref   string
	sizes []int64
	total int64
	mu    sync.Mutex
	got   int64 // bytes of the finished layers
	cur   int64 // bytes of the current one
	layer int
	last  time.Time
	start time.Time
	drawn bool
}

func newProgress(w io.Writer, ref string, layers []v1.Descriptor) *progress {
	p := &progress{w: w, ref: ref, start: time.Now()}
	for _, l := range layers {
		p.sizes = append(p.sizes, l.Size)
		p.total += l.Size
	}
	return p
}

// reader counts what the layer i's reader returns.
func (p *progress) reader(i int, rc io.ReadCloser) io.ReadCloser {
	p.mu.Lock()
	if i > p.layer {
		p.got += p.cur
		p.cur = 0
	}
	p.layer = i
	p.mu.Unlock()
	return &countingReader{rc: rc, p: p}
}

type countingReader struct {
	rc io.ReadCloser
	p  *progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.rc.Read(b)
	c.p.add(int64(n))
	return n, err
}

func (c *countingReader) Close() error { return c.rc.Close() }

// redrawEvery bounds how often the line is drawn.
const redrawEvery = 100 * time.Millisecond

func (p *progress) add(n int64) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur += n
	if time.Since(p.last) < redrawEvery {
		return
	}
	p.last = time.Now()
	fmt.Fprint(p.w, "\r\033[K"+p.line())
	p.drawn = true
}

// line renders the progress line.
func (p *progress) line() string {
	done := p.got + p.cur
	const width = 30
	fill := 0
	if p.total > 0 {
		fill = int(done * width / p.total)
	}
	fill = min(fill, width)
	rate := float64(done) / time.Since(p.start).Seconds() / 1e6
	return fmt.Sprintf("caisson: pulling %s: layer %d/%d [%s%s] %.1f/%.1f MB %.0f MB/s", p.ref, p.layer+1, len(p.sizes),
		strings.Repeat("#", fill), strings.Repeat(".", width-fill), float64(done)/1e6, float64(p.total)/1e6, rate)
}

// done erases the line.
func (p *progress) done() {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
