package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Client talks to an agent over its unix socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// StatusError is a non-2xx answer from the agent.
type StatusError struct {
	Code    int
	Message string
	CNICode uint // the CNI error code of a /v1/cni/ request, if any
}

func (e *StatusError) Error() string { return e.Message }

// IsBadRequest reports whether err is the agent refusing a request as
// invalid (HTTP 400), which the CLI maps to exit code 2.
func IsBadRequest(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusBadRequest
}

// Stream issues a GET whose answer is a stream of JSON lines and calls fn
// with each line until the stream ends, ctx is done or fn returns an error.
func (c *Client) Stream(ctx context.Context, path string, fn func(line []byte) error) error {
	body, err := c.open(ctx, path)
	if err != nil {
		return err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// open issues a GET whose answer runs as long as ctx lets it and returns
// the body of a 2xx answer; any other is returned as a StatusError.
func (c *Client) open(ctx context.Context, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://vxdp"+path, nil)
	if err != nil {
		return nil, err
	}
	hc := *c.hc
	hc.Timeout = 0 // a stream runs as long as the caller wants
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent at %s: %w", c.socket, err)
	}
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		return nil, statusError(resp, data)
	}
	return resp.Body, nil
}

// Raw issues a GET and copies the answer's body to w as it arrives (a
// pcap stream, say) until it ends or ctx is done.
func (c *Client) Raw(ctx context.Context, path string, w io.Writer) error {
	body, err := c.open(ctx, path)
	if err != nil {
		return err
	}
	defer body.Close()
	_, err = io.Copy(w, body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Do sends a request with an optional JSON body and decodes the JSON answer
// into out (if non-nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://vxdp"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("agent at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("agent at %s: %w", c.socket, err)
	}
	if resp.StatusCode/100 != 2 {
		return statusError(resp, data)
	}
	if out != nil {
		if raw, ok := out.(*json.RawMessage); ok {
			*raw = append((*raw)[:0], data...)
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer to %s %s: %w", method, path, err)
		}
	}
	return nil
}

// statusError turns a non-2xx answer into a *StatusError carrying the
// agent's message.
func statusError(resp *http.Response, body []byte) error {
	var e Error
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		e.Error = resp.Status
	}
	return &StatusError{Code: resp.StatusCode, Message: e.Error, CNICode: e.CNICode}
}
