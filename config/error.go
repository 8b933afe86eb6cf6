package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Error is one configuration problem. It names the key and the value as
// written, so that a user can find the line to fix; callers map it to exit
// code 2. Error() is always a single line.
type Error struct {
	// Key is the key at fault: "pod-cidr", or "nodes[1].ip" inside a
	// list. Empty for a problem with the document as a whole.
	Key string
	// Value is the offending value as written; empty when it is missing.
	Value string
	// Reason says what is wrong with it.
	Reason string

	// File and Line say where the value came from, when known (Line is
	// 1-based; 0 = unknown).
	File string
	Line int
	// Err is the underlying error, if any (for example from reading the
	// file), for errors.Is.
	Err error
}

// Error formats the problem as
//
//	config: pod-cidr: invalid value "10.1.1.0/33": bad prefix length (vxdp.yaml line 4)
//
// Everything that comes from the input is quoted where it could break the
// line, so the message stays one line whatever the input held.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.Key != "" {
		b.WriteString(quoteKey(e.Key))
		b.WriteString(": ")
	}
	if e.Value != "" {
		b.WriteString("invalid value ")
		b.WriteString(strconv.Quote(e.Value))
		b.WriteString(": ")
	}
	b.WriteString(oneLine(e.Reason))
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, " (%s line %d)", oneLine(e.File), e.Line)
	case e.File != "":
		fmt.Fprintf(&b, " (%s)", oneLine(e.File))
	case e.Line > 0:
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Errors is every problem found in one source (a YAML file, a ConfigMap
// directory), in the order found, so that one run names them all. It
// always holds two or more: a single problem is returned as the *Error
// itself. errors.As finds the first *Error in it, so callers that look for
// *Error (exit code 2) need not know about Errors.
type Errors []*Error

// Error puts each problem on a line of its own, formatted as by
// (*Error).Error.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, for errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// joinErrors returns nil for no problem, the *Error for one, and Errors
// for several.
func joinErrors(es []*Error) error {
	switch len(es) {
	case 0:
		return nil
	case 1:
		return es[0]
	}
	return Errors(es)
}

// quoteKey leaves ordinary keys ("nodes[1].pod-cidr") bare and quotes
// anything else, which can only be an unknown key from the input.
func quoteKey(k string) string {
	for i := 0; i < len(k); i++ {
		c := k[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '[' || c == ']'
		if !ok {
			return strconv.Quote(k)
		}
	}
	return k
}

func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' }), "; ")
}

// reason is a problem with a value before the key is known; Set and the
// YAML walker turn it into an *Error.
type reason string

func (r reason) Error() string { return string(r) }

func reasonf(format string, args ...any) error { return reason(fmt.Sprintf(format, args...)) }

// asError gives err the key and value it is about, unless it already is an
// *Error (a nested key such as nodes[0].ip names itself).
func asError(err error, key, value string) *Error {
	if e, ok := err.(*Error); ok {
		return e
	}
	return &Error{Key: key, Value: value, Reason: err.Error()}
}
