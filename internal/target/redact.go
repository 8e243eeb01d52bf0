package target

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
)

var (
	urlPasswordRe = regexp.MustCompile(`(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@`)
	kvPasswordRe  = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
)

// Redact removes secrets from s: the password of any PostgreSQL URL or key=value connection
// string, and every occurrence of dsn itself and of its password.
func Redact(s, dsn string) string {
	if dsn != "" {
		if pw := dsnPassword(dsn); len(pw) >= 4 { // shorter ones would garble the text
			s = strings.ReplaceAll(s, pw, "xxxxx")
		}
		s = strings.ReplaceAll(s, dsn, RedactDSN(dsn))
	}
	s = urlPasswordRe.ReplaceAllString(s, "${1}xxxxx@")
	return kvPasswordRe.ReplaceAllString(s, "${1}xxxxx")
}

// ConnectMessage is what err, a failure to connect to the database of dsn, says, without
// secrets. pgx lists each attempt to connect, and the attempts at one host (with TLS, then
// without, under sslmode=prefer) mostly fail the same way: a line said before is left out.
func ConnectMessage(err error, dsn string) string {
	var out []string
	for _, l := range strings.Split(Redact(err.Error(), dsn), "\n") {
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// RedactDSN returns dsn with its password replaced, for display: the password of the user
// information and a password query parameter of a URL, or the password of a key=value string.
func RedactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		// Not a URL pgx would read as one, or not a valid one: redact by pattern.
		return kvPasswordRe.ReplaceAllString(urlPasswordRe.ReplaceAllString(dsn, "${1}xxxxx@"), "${1}xxxxx")
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func dsnPassword(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		if pw := u.Query().Get("password"); pw != "" {
			return pw
		}
		if u.User != nil {
			pw, _ := u.User.Password()
			return pw
		}
		return ""
	}
	if m := kvPasswordRe.FindStringSubmatch(dsn); m != nil {
		return strings.Trim(m[2], "'")
	}
	return ""
}
