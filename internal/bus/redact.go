package bus

import "net/url"

// redactURL hides the user info of a NATS URL (nats://user:pass@host or nats://token@host).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	u.User = url.User("xxxxx")
	return u.String()
}
