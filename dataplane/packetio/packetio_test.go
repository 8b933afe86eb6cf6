package packetio

import (
	"errors"
	"strings"
	"testing"
)

func TestReceiveBatch(t *testing.T) {
	bufs := [][]byte{make([]byte, 100), make([]byte, 100)}
	tests := []struct {
		name   string
		sizes  int
		meta   int
		offset int
		want   string
	}{
		{"fine", 2, 2, 10, ""},
		{"too few sizes", 1, 2, 10, "1 sizes"},
		{"too few meta", 2, 1, 10, "1 meta"},
		{"negative offset", 2, 2, -1, "offset -1"},
		{"offset at the end", 2, 2, 100, "offset 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReceiveBatch(bufs, make([]int, tt.sizes), make([]Meta, tt.meta), tt.offset, 8)
			if tt.want == "" && (err != nil || len(got) != 2) || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("ReceiveBatch = %d buffers, %v; want %q", len(got), err, tt.want)
			}
		})
	}
}

type closer struct{ closed, destroyed bool }

func (c *closer) Read([][]byte, []int, int) (int, error) { return 0, nil }
func (c *closer) Write([][]byte, int) (int, error)       { return 0, nil }
func (c *closer) BatchSize() int                         { return 1 }
func (c *closer) Name() string                           { return "c" }
func (c *closer) Close() error                           { c.closed = true; return nil }

type persistent struct{ closer }

func (p *persistent) Destroy() error { p.destroyed = true; return errors.New("gone") }

// Destroy removes a persistent device with Destroy, never just Close, and
// closes any other.
func TestDestroy(t *testing.T) {
	c := &closer{}
	if err := Destroy(c); err != nil || !c.closed {
		t.Fatalf("plain device: %v, closed %v", err, c.closed)
	}
	p := &persistent{}
	if err := Destroy(p); err == nil || !p.destroyed || p.closed {
		t.Fatalf("persistent device: %v, destroyed %v, closed %v", err, p.destroyed, p.closed)
	}
}

func TestReceiveBatchCuts(t *testing.T) {
	bufs := make([][]byte, 10)
	for i := range bufs {
		bufs[i] = make([]byte, 64)
	}
	got, err := ReceiveBatch(bufs, make([]int, 3), make([]Meta, 3), 0, 3)
	if err != nil || len(got) != 3 {
		t.Fatalf("ReceiveBatch = %d buffers, %v; want the batch of 3", len(got), err)
	}
}
