package sqlscript

import (
	"fmt"
	"strings"
)

// tokKind is the kind of a lexical token.
type tokKind uint8

const (
	tokEOF    tokKind = iota
	tokWord           // unquoted identifier or keyword
	tokNumber         // numeric literal (loosely scanned)
	tokString         // '...', E'...', U&'...', B'...', X'...', N'...', $tag$...$tag$
	tokIdent          // "..." or U&"..." quoted identifier
	tokParam          // $1
	tokOp             // any other single byte: ; ( ) . , operators, a stray backslash
)

// token is one lexical token of a script; start and end are byte offsets, line is the 1-based
// line on which the token starts.
type token struct {
	kind       tokKind
	start, end int
	line       int
}

// scanner is a single-pass PostgreSQL lexer. It only knows as much of the lexical grammar
// (src/backend/parser/scan.l) as is needed to find token boundaries: it never looks back
// and never rescans a byte more than a constant number of times, so it is linear in the
// size of its input. After an error, next returns tokEOF forever and err is set.
type scanner struct {
	src  string
	pos  int
	line int
	err  *SyntaxError
}

const utf8BOM = "\uFEFF"

func newScanner(src string) *scanner {
	s := &scanner{src: src, line: 1}
	if strings.HasPrefix(src, utf8BOM) {
		s.pos = len(utf8BOM)
	}
	return s
}

func (s *scanner) byteAt(i int) byte {
	if i < 0 || i >= len(s.src) {
		return 0
	}
	return s.src[i]
}

func (s *scanner) fail(line int, msg string) token {
	s.err = &SyntaxError{Line: line, Msg: msg}
	s.pos = len(s.src)
	return token{kind: tokEOF, start: s.pos, end: s.pos, line: line}
}

// next returns the next token, skipping whitespace and comments.
func (s *scanner) next() token {
	if s.err != nil || !s.skipSpaceAndComments() || s.pos >= len(s.src) {
		return token{kind: tokEOF, start: len(s.src), end: len(s.src), line: s.line}
	}
	start, line := s.pos, s.line
	c := s.src[start]
	switch {
	case c == '\'':
		return s.scanQuoted(start, start+1, '\'', tokString)
	case c == '"':
		return s.scanQuoted(start, start+1, '"', tokIdent)
	case c == '$':
		if end, ok := s.dollarDelimiter(start); ok {
			return s.scanDollar(start, end)
		}
		i := start + 1
		for i < len(s.src) && isDigit(s.src[i]) {
			i++
		}
		if i > start+1 {
			return s.emit(tokParam, start, i, line)
		}
		return s.emit(tokOp, start, start+1, line)
	case isIdentStart(c):
		i := start + 1
		for i < len(s.src) && isIdentCont(s.src[i]) {
			i++
		}
		if i == start+1 {
			switch c {
			case 'e', 'E': // E'...': backslash escapes
				if s.byteAt(i) == '\'' {
					return s.scanEscapeString(start, i+1)
				}
			case 'u', 'U': // U&'...' and U&"...": quoted like their plain forms
				if s.byteAt(i) == '&' {
					switch s.byteAt(i + 1) {
					case '\'':
						return s.scanQuoted(start, i+2, '\'', tokString)
					case '"':
						return s.scanQuoted(start, i+2, '"', tokIdent)
					}
				}
			}
		}
		// B'...', X'...' and N'...' are lexed as a word followed by a plain string, which
		// finds the same boundaries.
		return s.emit(tokWord, start, i, line)
	case isDigit(c) || (c == '.' && isDigit(s.byteAt(start+1))):
		i := start + 1
		for i < len(s.src) && (isDigit(s.src[i]) || isASCIILetter(s.src[i]) || s.src[i] == '_' || s.src[i] == '.') {
			i++
		}
		return s.emit(tokNumber, start, i, line)
	default:
		return s.emit(tokOp, start, start+1, line)
	}
}

func (s *scanner) emit(kind tokKind, start, end, line int) token {
	s.pos = end
	return token{kind: kind, start: start, end: end, line: line}
}

// emitMultiline is emit for tokens that may span lines.
func (s *scanner) emitMultiline(kind tokKind, start, end, line int) token {
	s.line += strings.Count(s.src[start:end], "\n")
	return s.emit(kind, start, end, line)
}

// skipSpaceAndComments advances past whitespace, -- comments and (nested) /* */ comments.
// It reports false after an error.
func (s *scanner) skipSpaceAndComments() bool {
	for s.pos < len(s.src) {
		c := s.src[s.pos]
		switch {
		case c == '\n':
			s.line++
			s.pos++
		case isSpace(c):
			s.pos++
		case c == '-' && s.byteAt(s.pos+1) == '-':
			// Like the server, a -- comment ends at either \n or \r.
			end := strings.IndexAny(s.src[s.pos:], "\r\n")
			if end < 0 {
				s.pos = len(s.src)
			} else {
				s.pos += end
			}
		case c == '/' && s.byteAt(s.pos+1) == '*':
			startLine := s.line
			depth := 1
			i := s.pos + 2
			for i < len(s.src) && depth > 0 {
				switch {
				case s.src[i] == '/' && s.byteAt(i+1) == '*':
					depth++
					i += 2
				case s.src[i] == '*' && s.byteAt(i+1) == '/':
					depth--
					i += 2
				default:
					if s.src[i] == '\n' {
						s.line++
					}
					i++
				}
			}
			if depth > 0 {
				s.fail(startLine, "unterminated /* comment")
				return false
			}
			s.pos = i
		default:
			return true
		}
	}
	return true
}

// scanQuoted scans a string or identifier whose body starts at i and ends at an undoubled q
// (a doubled q is an escaped q).
func (s *scanner) scanQuoted(start, i int, q byte, kind tokKind) token {
	for {
		j := strings.IndexByte(s.src[i:], q)
		if j < 0 {
			if kind == tokIdent {
				return s.fail(s.line, "unterminated quoted identifier")
			}
			return s.fail(s.line, "unterminated quoted string")
		}
		i += j + 1
		if s.byteAt(i) == q {
			i++
			continue
		}
		return s.emitMultiline(kind, start, i, s.line)
	}
}

// scanEscapeString scans the body (starting at i) of an E'...' string, where a backslash
// escapes the next byte and a doubled quote is an escaped quote.
func (s *scanner) scanEscapeString(start, i int) token {
	for i < len(s.src) {
		switch s.src[i] {
		case '\\':
			i += 2
		case '\'':
			if s.byteAt(i+1) == '\'' {
				i += 2
				continue
			}
			return s.emitMultiline(tokString, start, i+1, s.line)
		default:
			i++
		}
	}
	return s.fail(s.line, "unterminated quoted string")
}

// dollarDelimiter reports whether a dollar-quote delimiter ($$ or $tag$) starts at start, and
// where it ends. A tag is an identifier without dollar signs; $1 is a parameter, not a tag.
func (s *scanner) dollarDelimiter(start int) (int, bool) {
	i := start + 1
	if s.byteAt(i) == '$' {
		return i + 1, true
	}
	if i >= len(s.src) || !isIdentStart(s.src[i]) {
		return 0, false
	}
	for i++; i < len(s.src) && isTagCont(s.src[i]); i++ {
	}
	if s.byteAt(i) == '$' {
		return i + 1, true
	}
	return 0, false
}

func (s *scanner) scanDollar(start, delimEnd int) token {
	delim := s.src[start:delimEnd]
	j := strings.Index(s.src[delimEnd:], delim)
	if j < 0 {
		shown := delim
		if len(shown) > 40 {
			shown = strings.ToValidUTF8(shown[:36], "") + "...$"
		}
		return s.fail(s.line, fmt.Sprintf("unterminated dollar-quoted string %s", shown))
	}
	return s.emitMultiline(tokString, start, delimEnd+j+len(delim), s.line)
}

func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\f', '\v':
		return true
	}
	return false
}

func isDigit(c byte) bool       { return '0' <= c && c <= '9' }
func isASCIILetter(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }

// isIdentStart matches the server's ident_start: a letter, an underscore or any non-ASCII byte.
func isIdentStart(c byte) bool { return isASCIILetter(c) || c == '_' || c >= 0x80 }

// isTagCont matches the server's dolq_cont.
func isTagCont(c byte) bool { return isIdentStart(c) || isDigit(c) }

// isIdentCont matches the server's ident_cont, which unlike a dollar-quote tag allows '$'.
func isIdentCont(c byte) bool { return isTagCont(c) || c == '$' }
