package toolrun

import (
	"fmt"
	"regexp"
	"strings"
)

// flywayStatement is one statement of a script, as Flyway's PostgreSQL parser cuts it.
type flywayStatement struct {
	sql  string // without the terminating ';'
	line int    // line of its first character that is not a comment or a space
	// nonTransactional is Flyway's detection of a statement PostgreSQL refuses in a
	// transaction block.
	nonTransactional bool
}

// flywayNonTransactional are the patterns of PostgreSQLParser.detectCanExecuteInTransaction,
// matched against a statement's leading words, upper-cased and separated by single spaces.
// ALTER TYPE … ADD VALUE is there only before PostgreSQL 12, which the stand-in does not
// support: PostgreSQL 12 and later run it in a transaction.
var flywayNonTransactional = regexp.MustCompile(`^(?:(?:CREATE|DROP) (?:DATABASE|TABLESPACE|SUBSCRIPTION)|ALTER SYSTEM|(?:CREATE|DROP)(?: UNIQUE)? INDEX CONCURRENTLY|REINDEX(?: VERBOSE)? (?:SCHEMA|DATABASE|SYSTEM)|VACUUM|DISCARD ALL)(?: |$)`)

// parseFlywayScript cuts a PostgreSQL script into statements as Flyway's parser does: at ';'
// outside comments (-- and nested /* */), string literals ('…', E'…' with backslash escapes),
// quoted identifiers, dollar-quoted strings ($$…$$, $tag$…$tag$) and parentheses, and outside a
// BEGIN ATOMIC … END body (whose CASE … END pairs it counts). A statement with no ';' at the
// end of the script is a statement too. COPY … FROM STDIN is refused: the stand-in does not
// reproduce it.
func parseFlywayScript(sql string) ([]flywayStatement, error) {
	var (
		stmts      []flywayStatement
		start      = 0 // offset of the statement being read
		firstLine  = 0 // line of its first significant character, 0 while there is none
		line       = 1 // current line
		parens     = 0 // parenthesis depth
		atomic     = 0 // BEGIN ATOMIC / CASE depth inside an atomic body
		words      []string
		prev, word string
	)
	flush := func(end int) error {
		text := strings.TrimSpace(sql[start:end])
		if firstLine != 0 {
			lead := strings.Join(words, " ")
			if strings.HasPrefix(lead, "COPY ") && strings.Contains(lead, " FROM STDIN") {
				return fmt.Errorf("line %d: COPY … FROM STDIN: the Flyway stand-in does not reproduce it", firstLine)
			}
			stmts = append(stmts, flywayStatement{sql: text, line: firstLine, nonTransactional: flywayNonTransactional.MatchString(lead)})
		}
		start, firstLine, parens, atomic, words, prev = end+1, 0, 0, 0, nil, ""
		return nil
	}
	significant := func() {
		if firstLine == 0 {
			firstLine = line
		}
	}
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			j := strings.IndexByte(sql[i:], '\n')
			if j < 0 {
				j = len(sql) - i
			}
			i += j
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			depth := 0
			for i < len(sql) {
				if strings.HasPrefix(sql[i:], "/*") {
					depth++
					i += 2
				} else if strings.HasPrefix(sql[i:], "*/") {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					if sql[i] == '\n' {
						line++
					}
					i++
				}
			}
			if depth != 0 {
				return nil, fmt.Errorf("line %d: unterminated comment", line)
			}
		case c == '\'' || ((c == 'E' || c == 'e') && i+1 < len(sql) && sql[i+1] == '\'' && !identChar(sql, i-1)):
			significant()
			escapes := c != '\''
			if escapes {
				i++
			}
			from := line
			for i++; ; {
				if i >= len(sql) {
					return nil, fmt.Errorf("line %d: unterminated string literal", from)
				}
				ch := sql[i]
				if ch == '\n' {
					line++
				}
				if ch == '\\' && escapes {
					if i+1 < len(sql) && sql[i+1] == '\n' {
						line++
					}
					i += 2
					continue
				}
				i++
				if ch == '\'' {
					if i < len(sql) && sql[i] == '\'' {
						i++
						continue
					}
					break
				}
			}
			prev, word = "", ""
		case c == '"':
			significant()
			from := line
			j := i + 1
			for {
				k := strings.IndexByte(sql[j:], '"')
				if k < 0 {
					return nil, fmt.Errorf("line %d: unterminated quoted identifier", from)
				}
				j += k + 1
				if j < len(sql) && sql[j] == '"' {
					j++
					continue
				}
				break
			}
			line += strings.Count(sql[i:j], "\n")
			i = j
			prev, word = "", ""
		case c == '$' && dollarTag(sql[i:]) != "":
			significant()
			tag := dollarTag(sql[i:])
			k := strings.Index(sql[i+len(tag):], tag)
			if k < 0 {
				return nil, fmt.Errorf("line %d: unterminated dollar-quoted string %s", line, tag)
			}
			end := i + len(tag) + k + len(tag)
			line += strings.Count(sql[i:end], "\n")
			i = end
			prev, word = "", ""
		case c == '(':
			significant()
			parens++
			i++
		case c == ')':
			parens--
			i++
		case c == ';':
			if parens <= 0 && atomic == 0 {
				if err := flush(i); err != nil {
					return nil, err
				}
			}
			i++
		case identStart(c):
			significant()
			j := i + 1
			for j < len(sql) && (identChar(sql, j) || sql[j] == '$') {
				j++
			}
			prev, word = word, strings.ToUpper(sql[i:j])
			if len(words) < 8 {
				words = append(words, word)
			}
			switch {
			case word == "ATOMIC" && prev == "BEGIN":
				atomic++
			case word == "CASE" && atomic > 0:
				atomic++
			case word == "END" && atomic > 0:
				atomic--
			}
			i = j
		default:
			significant()
			prev, word = "", ""
			i++
		}
	}
	if err := flush(len(sql)); err != nil {
		return nil, err
	}
	return stmts, nil
}

func identStart(c byte) bool {
	return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || c >= 0x80
}

// identChar reports whether sql[i] exists and can continue an identifier.
func identChar(sql string, i int) bool {
	if i < 0 || i >= len(sql) {
		return false
	}
	c := sql[i]
	return identStart(c) || ('0' <= c && c <= '9')
}

// dollarTag returns the dollar-quote delimiter s starts with ("$$", "$body$"), or "" when s
// starts with a '$' that opens none (a parameter such as $1).
func dollarTag(s string) string {
	if len(s) < 2 || s[0] != '$' {
		return ""
	}
	if s[1] == '$' {
		return "$$"
	}
	if !identStart(s[1]) {
		return ""
	}
	for j := 2; j < len(s); j++ {
		switch c := s[j]; {
		case c == '$':
			return s[:j+1]
		case identStart(c) || ('0' <= c && c <= '9'):
		default:
			return ""
		}
	}
	return ""
}
