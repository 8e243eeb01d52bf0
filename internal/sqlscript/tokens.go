package sqlscript

// Token is one lexical token of SQL, for callers that read more of a statement than Classify
// does (the dry-run names the tables a statement it cannot execute would lock).
type Token struct {
	// Text is the token as written: a word, a quoted identifier with its quotes, a literal
	// (string, number, $1), or a single byte of punctuation or operator.
	Text string
	// Word is set for identifiers and keywords, quoted or not.
	Word bool
	// Start and End are the token's byte offsets in the text given to Tokens.
	Start, End int
}

// Tokens returns the tokens of sql, skipping whitespace and comments, with the lexer that
// splits scripts: string literals, dollar quoting and nested comments are read as PostgreSQL
// reads them. It stops at the end of sql or at its first lexical error.
func Tokens(sql string) []Token {
	sc := newScanner(sql)
	var out []Token
	for {
		t := sc.next()
		if t.kind == tokEOF {
			return out
		}
		out = append(out, Token{Text: sc.src[t.start:t.end], Word: t.kind == tokWord || t.kind == tokIdent, Start: t.start, End: t.end})
	}
}
