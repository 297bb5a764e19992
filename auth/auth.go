// Package auth decides who a client is and what it may do: it verifies the
// JWTs that clients present at the handshake, holds the topic patterns their
// claims grant, and checks request origins against an allow-list.
package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Config configures a Verifier. Exactly one of Secret and PublicKey is set.
type Config struct {
	// Secret is the HMAC key of HS256 tokens.
	Secret []byte
	// PublicKey verifies RS256 (*rsa.PublicKey) or ES256 (*ecdsa.PublicKey
	// on P-256) tokens. LoadPublicKey reads one from PEM.
	PublicKey crypto.PublicKey
	// Issuer, if set, must equal the token's iss.
	Issuer string
	// Audience, if set, must be one of the token's aud.
	Audience string
	// Leeway is the clock skew allowed when checking exp and nbf.
	Leeway time.Duration
	// AllowNoExp lets in tokens without an exp claim, which never expire.
	// By default they are refused.
	AllowNoExp bool
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Claims are the claims of a fanout token beside the registered ones: the
// topic patterns the bearer may subscribe to and publish on. A claim may be
// a string or an array of strings.
type Claims struct {
	jwt.RegisteredClaims
	Subscribe jwt.ClaimStrings `json:"subscribe,omitempty"`
	Publish   jwt.ClaimStrings `json:"publish,omitempty"`
}

// MaxPatterns bounds the patterns a token may list per claim, so that a
// check walks a short list.
const MaxPatterns = 64

// ErrNoToken is returned by Verify for an empty token.
var ErrNoToken = errors.New("auth: no token")

// MinSecretBytes is the shortest HS256 secret NewVerifier accepts: a
// shorter one can be found by brute force from a single token (RFC 7518
// section 3.2 asks for a key as long as the hash, 256 bits).
const MinSecretBytes = 32

// ErrShortSecret is returned by NewVerifier for an HS256 secret shorter
// than MinSecretBytes.
var ErrShortSecret = fmt.Errorf("auth: an HS256 secret must be at least %d bytes", MinSecretBytes)

// Verifier verifies tokens. It is safe for concurrent use.
type Verifier struct {
	parser *jwt.Parser
	key    any
	now    func() time.Time
	leeway time.Duration
}

// NewVerifier returns a Verifier for cfg.
func NewVerifier(cfg Config) (*Verifier, error) {
	var method string
	var key any
	switch k := cfg.PublicKey.(type) {
	case nil:
		if len(cfg.Secret) == 0 {
			return nil, errors.New("auth: neither a secret nor a public key")
		}
		if len(cfg.Secret) < MinSecretBytes {
			return nil, fmt.Errorf("%w, not %d", ErrShortSecret, len(cfg.Secret))
		}
		method, key = jwt.SigningMethodHS256.Alg(), cfg.Secret
	case *rsa.PublicKey:
		method, key = jwt.SigningMethodRS256.Alg(), k
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("auth: ES256 needs a P-256 key, not %s", k.Curve.Params().Name)
		}
		method, key = jwt.SigningMethodES256.Alg(), k
	default:
		return nil, fmt.Errorf("auth: unsupported public key type %T (want RSA or ECDSA P-256)", k)
	}
	if cfg.PublicKey != nil && len(cfg.Secret) > 0 {
		return nil, errors.New("auth: both a secret and a public key; configure one")
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	// Only the one algorithm the key is for: a token cannot pick another
	// (the alg=none and RS/HS confusion attacks).
	opts := []jwt.ParserOption{jwt.WithValidMethods([]string{method}), jwt.WithLeeway(cfg.Leeway), jwt.WithTimeFunc(now)}
	if !cfg.AllowNoExp {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	return &Verifier{parser: jwt.NewParser(opts...), key: key, now: now, leeway: cfg.Leeway}, nil
}

// LoadPublicKey parses a PEM-encoded public key ("PUBLIC KEY", "RSA PUBLIC
// KEY") or certificate ("CERTIFICATE") for NewVerifier.
func LoadPublicKey(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("auth: no PEM block in public key file")
	}
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: parse public key: %w", err)
		}
		return k, nil
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: parse RSA public key: %w", err)
		}
		return k, nil
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: parse certificate: %w", err)
		}
		return cert.PublicKey, nil
	}
	return nil, fmt.Errorf("auth: PEM block %q is not a public key", block.Type)
}

// Verify checks a token's signature, exp, nbf (and iss and aud if
// configured) and its claims, and returns the identity it grants. The
// error says why a token is refused; it never echoes the token.
func (v *Verifier) Verify(token string) (Identity, error) {
	if token == "" {
		return Identity{}, ErrNoToken
	}
	var c Claims
	if _, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.key, nil }); err != nil {
		return Identity{}, fmt.Errorf("auth: %w", err)
	}
	if !validUser(c.Subject) {
		return Identity{}, errors.New("auth: sub must be 1 to 64 of A-Z a-z 0-9 - _ . @")
	}
	if len(c.Subscribe) > MaxPatterns || len(c.Publish) > MaxPatterns {
		return Identity{}, fmt.Errorf("auth: more than %d topic patterns in a claim", MaxPatterns)
	}
	for _, p := range append(c.Subscribe, c.Publish...) {
		if !validPattern(p) {
			return Identity{}, fmt.Errorf("auth: invalid topic pattern %q", p)
		}
	}
	g := grant{
		user:      c.Subject,
		subscribe: strings.Join(c.Subscribe, ","),
		publish:   strings.Join(c.Publish, ","),
	}
	if c.ExpiresAt != nil {
		// With the leeway, as the parser checked it: a token accepted
		// here must not count as expired at its first subscribe. In
		// milliseconds, not seconds: a leeway of 900ms cut to whole
		// seconds expired a token the parser had just accepted.
		g.expires = c.ExpiresAt.Add(v.leeway).UnixMilli()
	}
	return Identity{g: &g}, nil
}

// Token returns the token of a request: the credentials of an
// "Authorization: Bearer" header, else the token= query parameter (for
// browsers, which cannot set headers on a WebSocket). It returns "" if
// there is neither.
func Token(authorization, rawQuery string) string {
	if scheme, cred, ok := strings.Cut(strings.TrimSpace(authorization), " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(cred)
	}
	for rest := rawQuery; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if key, value, _ := strings.Cut(pair, "="); key == "token" {
			if v, err := url.QueryUnescape(value); err == nil {
				return v
			}
			return value
		}
	}
	return ""
}

// KeyMatches reports whether key equals want, in time that does not depend
// on where they differ. An empty want matches nothing.
func KeyMatches(key, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(key), []byte(want)) == 1
}

// Identity is what a verified token grants: a user and the topics the user
// may subscribe to and publish on. It is one word, a pointer to the grant
// of one verification. Grants are not interned: with a token per user, as
// is usual, interning saved nothing and cost about 200 bytes per
// connection in unique's map. The zero Identity is nobody: it may do
// nothing.
type Identity struct {
	g *grant
}

// grant is what a token grants: the patterns are joined with commas, which
// topic names never hold.
type grant struct {
	user      string
	subscribe string
	publish   string
	expires   int64 // unix milliseconds, exp plus the leeway; 0: none
}

// UserTopicPrefix starts the name of every user's own topic, user:<sub>.
const UserTopicPrefix = "user:"

// IsZero reports whether id is the zero Identity.
func (id Identity) IsZero() bool { return id.g == nil }

// User returns the token's sub, or "" for the zero Identity.
func (id Identity) User() string {
	if id.IsZero() {
		return ""
	}
	return id.g.user
}

// UserTopic returns the user's own topic, "user:" + sub.
func (id Identity) UserTopic() string { return UserTopicPrefix + id.User() }

// IsUserTopic reports whether topic is the identity's own, UserTopic(),
// without building it. The zero Identity has none.
func (id Identity) IsUserTopic(topic string) bool {
	if id.IsZero() {
		return false
	}
	user, ok := strings.CutPrefix(topic, UserTopicPrefix)
	return ok && user == id.g.user
}

// Expired reports whether the token's exp, plus the verifier's leeway, has
// passed at now.
func (id Identity) Expired(now time.Time) bool {
	if id.IsZero() {
		return true
	}
	exp := id.g.expires
	return exp != 0 && now.UnixMilli() >= exp
}

// CanSubscribe reports whether the identity may subscribe to topic: its own
// user topic always, any other topic that one of its subscribe patterns
// matches.
func (id Identity) CanSubscribe(topic string) bool {
	if id.IsZero() {
		return false
	}
	if id.IsUserTopic(topic) {
		return true
	}
	return matchAny(id.g.subscribe, topic)
}

// CanPublish reports whether one of the identity's publish patterns
// matches topic.
func (id Identity) CanPublish(topic string) bool {
	if id.IsZero() {
		return false
	}
	return matchAny(id.g.publish, topic)
}

// matchAny reports whether one of the comma-separated patterns matches topic.
func matchAny(patterns, topic string) bool {
	for rest := patterns; rest != ""; {
		var p string
		p, rest, _ = strings.Cut(rest, ",")
		if Match(p, topic) {
			return true
		}
	}
	return false
}

// Match reports whether the topic pattern p matches topic. A pattern is a
// topic name, matched exactly, or a prefix followed by '*', which matches
// every topic that starts with the prefix ("chat.*", "*"). Users' own
// topics ("user:...") are private: only a pattern that itself starts with
// "user:" matches them, so "*" does not grant other users' topics.
func Match(p, topic string) bool {
	prefix, wild := strings.CutSuffix(p, "*")
	if !wild {
		return p == topic
	}
	if strings.HasPrefix(topic, UserTopicPrefix) && !strings.HasPrefix(prefix, UserTopicPrefix) {
		return false
	}
	return strings.HasPrefix(topic, prefix)
}

// validPattern reports whether p is a topic name, or a possibly empty
// prefix of one followed by '*'.
func validPattern(p string) bool {
	name, wild := strings.CutSuffix(p, "*")
	if name == "" {
		return wild
	}
	return len(name) <= 256 && TopicChars(name)
}

// validUser reports whether sub can be a user id: its topic user:<sub>
// must be a valid topic name.
func validUser(sub string) bool {
	return sub != "" && len(sub) <= 64 && TopicChars(sub) && !strings.ContainsAny(sub, ":/")
}

// TopicChars reports whether s holds only the characters of topic names:
// ASCII letters, digits and "-_.:@/". (The hub checks names with it too,
// so that a pattern can name every topic and nothing else.)
func TopicChars(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		case b == '-' || b == '_' || b == '.' || b == ':' || b == '@' || b == '/':
		default:
			return false
		}
	}
	return true
}
