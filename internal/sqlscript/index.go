package sqlscript

import "strings"

// IndexStatement is a CREATE INDEX CONCURRENTLY or DROP INDEX CONCURRENTLY statement, read as
// far as a worker that retries one needs: which index it creates or drops.
type IndexStatement struct {
	// Create is set for CREATE INDEX, unset for DROP INDEX.
	Create bool
	// IfNotExists (CREATE) and IfExists (DROP) as written.
	IfNotExists, IfExists bool
	// Name is the index as written: one identifier for CREATE (the index goes in its table's
	// schema), possibly schema-qualified for DROP; "" for a CREATE that lets the server name
	// the index.
	Name string
	// Table is the table as written (CREATE only), possibly schema-qualified.
	Table string
}

// ConcurrentIndex reads sql as a CREATE [UNIQUE] INDEX CONCURRENTLY or a DROP INDEX
// CONCURRENTLY of a single index; ok is false for any other statement.
func ConcurrentIndex(sql string) (IndexStatement, bool) {
	toks := Tokens(sql)
	kw := func(i int, words ...string) bool {
		if i+len(words) > len(toks) {
			return false
		}
		for j, w := range words {
			t := toks[i+j]
			if !t.Word || strings.HasPrefix(t.Text, `"`) || !strings.EqualFold(t.Text, w) {
				return false
			}
		}
		return true
	}
	var st IndexStatement
	i := 0
	switch {
	case kw(0, "create", "unique", "index", "concurrently"):
		st.Create, i = true, 4
	case kw(0, "create", "index", "concurrently"):
		st.Create, i = true, 3
	case kw(0, "drop", "index", "concurrently"):
		i = 3
	default:
		return IndexStatement{}, false
	}
	if st.Create {
		if kw(i, "if", "not", "exists") {
			st.IfNotExists, i = true, i+3
		}
		if i < len(toks) && toks[i].Word && !kw(i, "on") {
			st.Name, i = toks[i].Text, i+1
		}
		if !kw(i, "on") {
			return IndexStatement{}, false
		}
		i++
		if kw(i, "only") {
			i++
		}
		st.Table, i = qualifiedName(toks, i)
		return st, st.Table != ""
	}
	if kw(i, "if", "exists") {
		st.IfExists, i = true, i+2
	}
	st.Name, i = qualifiedName(toks, i)
	if st.Name == "" || (i < len(toks) && toks[i].Text == ",") {
		return IndexStatement{}, false // several indexes: not one this reading covers
	}
	return st, true
}

// qualifiedName reads a possibly dotted name starting at toks[i] and returns its text and the
// index after it.
func qualifiedName(toks []Token, i int) (string, int) {
	var b strings.Builder
	for i < len(toks) && toks[i].Word {
		b.WriteString(toks[i].Text)
		i++
		if i+1 < len(toks) && toks[i].Text == "." && toks[i+1].Word {
			b.WriteByte('.')
			i++
			continue
		}
		break
	}
	return b.String(), i
}

// Ident returns the name a single identifier token stands for: an unquoted one folded to lower
// case, a quoted one without its quotes (a doubled quote inside it read as one).
func Ident(text string) string {
	if len(text) >= 2 && text[0] == '"' && text[len(text)-1] == '"' {
		return strings.ReplaceAll(text[1:len(text)-1], `""`, `"`)
	}
	return strings.ToLower(text)
}
