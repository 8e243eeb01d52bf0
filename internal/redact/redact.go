// Package redact hides secrets in text meant for people: logs, events, error messages, the
// health page, what a command prints. It is the one place that knows what a secret looks like
// in such text:
//
//   - the user information of a URL of any scheme: the password of user:password (the user
//     stays), or the whole of it when there is no ':' and the scheme is not PostgreSQL's (a NATS
//     token, nats://token@host). It runs to the last '@' before the host, so a password with a
//     raw '@' in it is hidden whole;
//   - the value of password=... in a URL query or a key=value connection string, quoted or not;
//   - any secret the caller knows (Secrets of a connection string, a password or token given on
//     the command line), wherever it appears, as a connection error may quote it alone.
//
// String hides them in free text; URL shows a connection string or a server list for display.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces a secret.
const Mask = "xxxxx"

// minKnown is the shortest known secret replaced wherever it appears: shorter ones would
// garble the text, and the patterns still hide them where they stand in a connection string.
const minKnown = 3

var (
	// userInfoRe matches a URL's scheme and user information, up to the last '@' before the
	// path, the end of the URL (white space, a quote) or the next URL of a comma-separated list.
	userInfoRe = regexp.MustCompile("([A-Za-z][A-Za-z0-9+.-]*)://([^/\\s,'\"`]*)@")
	// passwordRe matches the value of password=...: in a URL query (to the next parameter), or
	// anywhere else (a key=value connection string, PGPASSWORD=..., db_password = '...': a
	// quoted value, or to the next white space). The leftmost match wins, so a query's
	// "&password=" is read as the query's.
	passwordRe = regexp.MustCompile(`(?i)([?&]password=)([^&#\s'"` + "`" + `]*)|(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
)

// String returns s with its secrets hidden: URL user information, password=... values, and
// each of known (of at least three bytes) wherever it appears. Text without any is returned as
// it is, without allocating.
func String(s string, known ...string) string {
	if mayHold(s) {
		s = userInfoRe.ReplaceAllStringFunc(s, func(m string) string {
			sm := userInfoRe.FindStringSubmatch(m)
			return sm[1] + "://" + maskUserInfo(sm[1], sm[2]) + "@"
		})
		s = passwordRe.ReplaceAllStringFunc(s, func(m string) string {
			sm := passwordRe.FindStringSubmatch(m)
			if sm[1] != "" {
				return sm[1] + Mask
			}
			return sm[3] + Mask
		})
	}
	for _, k := range known {
		if len(k) >= minKnown && k != Mask {
			s = strings.ReplaceAll(s, k, Mask)
		}
	}
	return s
}

// URL returns a connection string (a URL or key=value pairs), or a comma-separated list of
// URLs, for display: its user information and passwords hidden as String hides them, also
// where a URL does not parse (a space in the user information, a bad escape).
func URL(s string) string {
	if !strings.Contains(s, "://") {
		return String(s)
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		scheme, rest, ok := strings.Cut(p, "://")
		// The user information runs to the last '@' before the path.
		hostEnd := len(rest)
		if slash := strings.IndexByte(rest, '/'); slash >= 0 {
			hostEnd = slash
		}
		if at := strings.LastIndexByte(rest[:hostEnd], '@'); ok && at >= 0 {
			p = scheme + "://" + maskUserInfo(scheme, rest[:at]) + rest[at:]
		}
		parts[i] = String(p)
	}
	return strings.Join(parts, ",")
}

// Secrets returns the secrets in a connection string (a URL or key=value pairs), for String:
// its password as written and decoded, a password query parameter, a token. Nothing for an
// empty string or one without a secret.
func Secrets(dsn string) []string {
	var out []string
	if scheme, rest, ok := strings.Cut(dsn, "://"); ok {
		hostEnd := len(rest)
		if slash := strings.IndexByte(rest, '/'); slash >= 0 {
			hostEnd = slash
		}
		if at := strings.LastIndexByte(rest[:hostEnd], '@'); at >= 0 {
			user, pw, hasPW := strings.Cut(rest[:at], ":")
			switch {
			case hasPW:
				out = append(out, pw)
				if dec, err := url.PathUnescape(pw); err == nil && dec != pw {
					out = append(out, dec)
				}
			case !postgres(scheme):
				out = append(out, user)
			}
		}
	}
	for _, sm := range passwordRe.FindAllStringSubmatch(dsn, -1) {
		v := sm[2]
		if sm[1] == "" {
			v = strings.Trim(sm[4], "'")
		}
		if v != "" {
			out = append(out, v)
			if dec, err := url.QueryUnescape(v); err == nil && dec != v {
				out = append(out, dec)
			}
		}
	}
	return out
}

// maskUserInfo hides the password of user information, or the whole of it where it may be a
// token (no ':', a scheme other than PostgreSQL's).
func maskUserInfo(scheme, info string) string {
	if user, _, ok := strings.Cut(info, ":"); ok {
		return user + ":" + Mask
	}
	if postgres(scheme) {
		return info // a user name alone
	}
	return Mask
}

func postgres(scheme string) bool {
	return strings.EqualFold(scheme, "postgres") || strings.EqualFold(scheme, "postgresql")
}

// mayHold is the cheap test before the regular expressions, for the logger's every attribute:
// a URL's user information needs "://" and "@", a password=... needs "password" then '='
// (a message such as "password authentication failed" has none).
func mayHold(s string) bool {
	if strings.Contains(s, "://") && strings.Contains(s, "@") {
		return true
	}
	for {
		i := indexFold(s, "password")
		if i < 0 {
			return false
		}
		s = s[i+len("password"):]
		if strings.HasPrefix(strings.TrimLeft(s, " \t\n\f\r"), "=") {
			return true
		}
	}
}

// ContainsFold reports whether s contains the lower-case ASCII word sub, in any case, without
// allocating.
func ContainsFold(s, sub string) bool { return indexFold(s, sub) >= 0 }

// indexFold is the index of the first instance of the lower-case ASCII word sub in s, in any
// case, or -1.
func indexFold(s, sub string) int {
	n := len(sub)
outer:
	for i := 0; i+n <= len(s); i++ {
		for j := 0; j < n; j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				continue outer
			}
		}
		return i
	}
	return -1
}
