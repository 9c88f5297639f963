package guard

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// maxSSELine bounds a line and an event's data: the feed's events are a
// few hundred bytes.
const maxSSELine = 64 << 10

var errSSETooLong = errors.New("guard: feed line or event too long")

// sseEvent is one dispatched Server-Sent Event, or a comment line.
type sseEvent struct {
	name    string // "message" when the event named none
	id      string
	hasID   bool
	data    string
	comment bool
}

// sseReader reads the text/event-stream format (HTML Living Standard
// §9.2.6) with LF or CRLF line ends (a lone CR ends no line here: the feed
// never sends one).
type sseReader struct {
	r     *bufio.Reader
	first bool
	// the event being read (a comment may come between its lines)
	ev      sseEvent
	data    []byte
	hasData bool
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 4096), first: true}
}

// next returns the next event or comment. Events without data are not
// dispatched (as the standard says). A line or event over maxSSELine is
// an error.
func (s *sseReader) next() (sseEvent, error) {
	for {
		line, err := s.line()
		if err != nil {
			return sseEvent{}, err
		}
		if s.first {
			line = bytes.TrimPrefix(line, []byte("\uFEFF"))
			s.first = false
		}
		if len(line) == 0 {
			ev := s.ev
			has := s.hasData
			s.ev, s.hasData = sseEvent{}, false
			if !has {
				continue
			}
			if ev.name == "" {
				ev.name = "message"
			}
			ev.data = string(s.data[:len(s.data)-1])
			s.data = s.data[:0]
			return ev, nil
		}
		if line[0] == ':' {
			return sseEvent{comment: true}, nil
		}
		field, value, found := bytes.Cut(line, []byte(":"))
		if found && len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(field) {
		case "event":
			s.ev.name = string(value)
		case "data":
			if len(s.data)+len(value)+1 > maxSSELine {
				return sseEvent{}, errSSETooLong
			}
			s.data = append(s.data, value...)
			s.data = append(s.data, '\n')
			s.hasData = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				s.ev.id, s.ev.hasID = string(value), true
			}
		}
	}
}

// line reads one line without its end.
func (s *sseReader) line() ([]byte, error) {
	line, err := s.r.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		// Longer than the buffer: gather it, bounded.
		buf := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = s.r.ReadSlice('\n')
			buf = append(buf, line...)
			if len(buf) > maxSSELine {
				return nil, errSSETooLong
			}
		}
		if err != nil {
			return nil, err
		}
		line = buf
	case err != nil:
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}
