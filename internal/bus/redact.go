package bus

import "regexp"

// userInfoRe matches the user information of every URL in a string, including each URL of a
// comma-separated server list.
var userInfoRe = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s,]*@`)

// redactURL hides the user information (user:password, or a token) of every URL in s. It also
// serves for error texts that quote a URL.
func redactURL(s string) string {
	return userInfoRe.ReplaceAllString(s, "${1}xxxxx@")
}

// RedactURL hides the user information of every URL in s, for logs and error texts.
func RedactURL(s string) string { return redactURL(s) }
