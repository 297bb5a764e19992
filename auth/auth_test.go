package auth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/auth"
)

var secret = []byte("auth-test-secret-of-some-length-32+")

// rsaKey is generated once: a 2048-bit key takes a noticeable time.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

var ecKey = sync.OnceValue(func() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

// t0 is the clock of the verifiers whose Now is fixed.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func at(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(t0.Add(d)) }

// sign signs claims with method and key.
func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	require.NoError(t, err)
	return s
}

// hs256 signs claims with the test secret.
func hs256(t *testing.T, claims jwt.Claims) string {
	return sign(t, jwt.SigningMethodHS256, secret, claims)
}

// user returns the claims of a token for sub that expires an hour after t0.
func user(sub string, subscribe, publish []string) auth.Claims {
	return auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: sub, ExpiresAt: at(time.Hour)},
		Subscribe:        subscribe,
		Publish:          publish,
	}
}

func newVerifier(t *testing.T, cfg auth.Config) *auth.Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return t0 }
	}
	v, err := auth.NewVerifier(cfg)
	require.NoError(t, err)
	return v
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkixPEM(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	return pemBlock("PUBLIC KEY", der)
}

// TestVerifyAlgorithms: each verifier accepts tokens of its own algorithm
// and key, and no other: the key decides the algorithm, not the token.
func TestVerifyAlgorithms(t *testing.T) {
	claims := user("alice", []string{"chat.*"}, []string{"chat.room"})
	otherEC, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tokens := map[string]string{
		"HS256":              hs256(t, claims),
		"RS256":              sign(t, jwt.SigningMethodRS256, rsaKey(), claims),
		"ES256":              sign(t, jwt.SigningMethodES256, ecKey(), claims),
		"HS256 other secret": sign(t, jwt.SigningMethodHS256, []byte("another secret"), claims),
		"ES256 other key":    sign(t, jwt.SigningMethodES256, otherEC, claims),
		"HS384":              sign(t, jwt.SigningMethodHS384, secret, claims),
		"PS256":              sign(t, jwt.SigningMethodPS256, rsaKey(), claims),
	}
	for alg, cfg := range map[string]auth.Config{
		"HS256": {Secret: secret},
		"RS256": {PublicKey: &rsaKey().PublicKey},
		"ES256": {PublicKey: &ecKey().PublicKey},
	} {
		v := newVerifier(t, cfg)
		for name, tok := range tokens {
			t.Run(alg+" verifier/"+name+" token", func(t *testing.T) {
				id, err := v.Verify(tok)
				if name != alg {
					require.Error(t, err)
					assert.True(t, id.IsZero())
					return
				}
				require.NoError(t, err)
				assert.Equal(t, "alice", id.User())
				assert.Equal(t, "user:alice", id.UserTopic())
				assert.True(t, id.CanSubscribe("chat.lobby"))
				assert.True(t, id.CanPublish("chat.room"))
				assert.False(t, id.CanPublish("chat.lobby"))
			})
		}
	}
}

// TestVerifyTimes: exp and nbf are enforced with the configured leeway, on
// the verifier's clock; a token that Verify accepts is not yet Expired at
// that moment, so the hub does not refuse its first subscribe.
func TestVerifyTimes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		exp     *jwt.NumericDate
		nbf     *jwt.NumericDate
		leeway  time.Duration
		noExp   bool // AllowNoExp
		wantErr error
	}{
		{name: "valid", exp: at(time.Minute), nbf: at(-time.Minute)},
		{name: "no exp", exp: nil, wantErr: jwt.ErrTokenRequiredClaimMissing},
		{name: "no exp, allowed", exp: nil, noExp: true},
		{name: "exp, no exp allowed", exp: at(time.Minute), noExp: true},
		{name: "expired", exp: at(-time.Second), wantErr: jwt.ErrTokenExpired},
		{name: "expiring now", exp: at(0), wantErr: jwt.ErrTokenExpired},
		{name: "expired within leeway", exp: at(-10 * time.Second), leeway: 30 * time.Second},
		// A leeway is not cut to whole seconds where an open connection's
		// expiry is checked: accepted at t0, this token counted as expired
		// at t0 (its exp plus 1.5 s, t0 + 0.5 s, cut to t0).
		{name: "expired within a leeway of 1.5s", exp: at(-time.Second), leeway: 1500 * time.Millisecond},
		{name: "expired beyond leeway", exp: at(-time.Minute), leeway: 30 * time.Second, wantErr: jwt.ErrTokenExpired},
		{name: "not yet valid", exp: at(time.Hour), nbf: at(time.Second), wantErr: jwt.ErrTokenNotValidYet},
		{name: "not yet valid within leeway", exp: at(time.Hour), nbf: at(10 * time.Second), leeway: 30 * time.Second},
		{name: "not yet valid beyond leeway", exp: at(time.Hour), nbf: at(time.Minute), leeway: 30 * time.Second, wantErr: jwt.ErrTokenNotValidYet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, auth.Config{Secret: secret, Leeway: tc.leeway, AllowNoExp: tc.noExp})
			c := user("alice", nil, nil)
			c.ExpiresAt, c.NotBefore = tc.exp, tc.nbf
			id, err := v.Verify(hs256(t, c))
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.False(t, id.Expired(t0), "accepted at t0 but Expired(t0)")
			if tc.exp != nil {
				assert.True(t, id.Expired(tc.exp.Add(tc.leeway)), "not Expired at exp + leeway")
			} else {
				assert.False(t, id.Expired(t0.Add(100*365*24*time.Hour)), "a token without exp expired")
			}
		})
	}
}

// TestVerifyRejects: tokens that are forged, meant for another issuer or
// audience, or whose claims break the rules are refused.
func TestVerifyRejects(t *testing.T) {
	hsV := newVerifier(t, auth.Config{Secret: secret})
	rsV := newVerifier(t, auth.Config{PublicKey: &rsaKey().PublicKey})
	esV := newVerifier(t, auth.Config{PublicKey: &ecKey().PublicKey})
	issV := newVerifier(t, auth.Config{Secret: secret, Issuer: "https://issuer.example", Audience: "fanout"})

	rsaPubDER, err := x509.MarshalPKIXPublicKey(&rsaKey().PublicKey)
	require.NoError(t, err)
	none := func(c jwt.Claims) string {
		return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, c)
	}
	alice := user("alice", nil, nil)
	// bob's claims under alice's signature.
	aliceParts := strings.Split(hs256(t, alice), ".")
	bobParts := strings.Split(hs256(t, user("bob", []string{"*"}, nil)), ".")
	forged := aliceParts[0] + "." + bobParts[1] + "." + aliceParts[2]
	withIss := func(iss string, aud ...string) auth.Claims {
		c := alice
		c.Issuer, c.Audience = iss, aud
		return c
	}
	withSub := func(sub string) auth.Claims { c := alice; c.Subject = sub; return c }
	patterns := func(n int) []string {
		p := make([]string, n)
		for i := range p {
			p[i] = "t" + strconv.Itoa(i)
		}
		return p
	}

	for _, tc := range []struct {
		name    string
		v       *auth.Verifier
		token   string
		wantErr error  // if set, errors.Is
		wantMsg string // if set, in the error
	}{
		{name: "empty", v: hsV, token: "", wantErr: auth.ErrNoToken},
		{name: "malformed", v: hsV, token: "not.a.jwt", wantErr: jwt.ErrTokenMalformed},
		{name: "payload swapped", v: hsV, token: forged, wantErr: jwt.ErrTokenSignatureInvalid},
		// The classic confusion: the verifier's RSA public key is no
		// secret, so an HS256 token "signed" with it must not pass.
		{name: "HS256 signed with the RSA public key PEM", v: rsV, token: sign(t, jwt.SigningMethodHS256, pkixPEM(t, &rsaKey().PublicKey), alice), wantErr: jwt.ErrTokenSignatureInvalid},
		{name: "HS256 signed with the RSA public key DER", v: rsV, token: sign(t, jwt.SigningMethodHS256, rsaPubDER, alice), wantErr: jwt.ErrTokenSignatureInvalid},
		{name: "alg none, HS256 verifier", v: hsV, token: none(alice)},
		{name: "alg none, RS256 verifier", v: rsV, token: none(alice)},
		{name: "alg none, ES256 verifier", v: esV, token: none(alice)},
		{name: "no iss", v: issV, token: hs256(t, withIss("", "fanout")), wantErr: jwt.ErrTokenRequiredClaimMissing},
		{name: "wrong iss", v: issV, token: hs256(t, withIss("https://other.example", "fanout")), wantErr: jwt.ErrTokenInvalidIssuer},
		{name: "no aud", v: issV, token: hs256(t, withIss("https://issuer.example")), wantErr: jwt.ErrTokenRequiredClaimMissing},
		{name: "wrong aud", v: issV, token: hs256(t, withIss("https://issuer.example", "other", "fanout-x")), wantErr: jwt.ErrTokenInvalidAudience},
		{name: "no sub", v: hsV, token: hs256(t, withSub("")), wantMsg: "sub"},
		{name: "sub with colon", v: hsV, token: hs256(t, withSub("a:b")), wantMsg: "sub"},
		{name: "sub with slash", v: hsV, token: hs256(t, withSub("a/b")), wantMsg: "sub"},
		{name: "sub with space", v: hsV, token: hs256(t, withSub("a b")), wantMsg: "sub"},
		{name: "sub not ASCII", v: hsV, token: hs256(t, withSub("zoë")), wantMsg: "sub"},
		{name: "sub of 65 bytes", v: hsV, token: hs256(t, withSub(strings.Repeat("a", 65))), wantMsg: "sub"},
		{name: "too many subscribe patterns", v: hsV, token: hs256(t, user("alice", patterns(auth.MaxPatterns+1), nil)), wantMsg: "patterns"},
		{name: "too many publish patterns", v: hsV, token: hs256(t, user("alice", nil, patterns(auth.MaxPatterns+1))), wantMsg: "patterns"},
		{name: "wildcard inside", v: hsV, token: hs256(t, user("alice", []string{"a*b"}, nil)), wantMsg: "pattern"},
		{name: "two wildcards", v: hsV, token: hs256(t, user("alice", []string{"**"}, nil)), wantMsg: "pattern"},
		{name: "empty pattern", v: hsV, token: hs256(t, user("alice", []string{""}, nil)), wantMsg: "pattern"},
		{name: "comma in pattern", v: hsV, token: hs256(t, user("alice", []string{"a,b"}, nil)), wantMsg: "pattern"},
		{name: "space in publish pattern", v: hsV, token: hs256(t, user("alice", nil, []string{"chat room"})), wantMsg: "pattern"},
		{name: "pattern too long", v: hsV, token: hs256(t, user("alice", []string{strings.Repeat("a", 257)}, nil)), wantMsg: "pattern"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tc.v.Verify(tc.token)
			require.Error(t, err)
			assert.True(t, id.IsZero())
			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
			}
			if tc.wantMsg != "" {
				assert.Contains(t, err.Error(), tc.wantMsg)
			}
			if tc.token != "" {
				assert.NotContains(t, err.Error(), tc.token, "the error echoes the token")
			}
		})
	}

	// The limits themselves are allowed.
	for name, c := range map[string]auth.Claims{
		"iss and one of aud":   withIss("https://issuer.example", "other", "fanout"),
		"sub of 64 bytes":      withSub(strings.Repeat("a", 64)),
		"sub of every char":    withSub("Az09-_.@"),
		"MaxPatterns patterns": user("alice", patterns(auth.MaxPatterns), patterns(auth.MaxPatterns)),
		"pattern of 256 bytes": user("alice", []string{strings.Repeat("a", 256) + "*"}, nil),
	} {
		t.Run("allowed/"+name, func(t *testing.T) {
			v := hsV
			if c.Issuer != "" {
				v = issV
			}
			_, err := v.Verify(hs256(t, c))
			assert.NoError(t, err)
		})
	}
}

// TestMatch: a pattern is a name or a prefix and '*'; user topics are
// matched only by patterns that start with "user:".
func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, topic string
		want           bool
	}{
		{"chat", "chat", true},
		{"chat", "chat2", false},
		{"chat", "cha", false},
		{"chat", "Chat", false},
		{"chat.*", "chat.room", true},
		{"chat.*", "chat.room.sub", true},
		{"chat.*", "chat.", true},
		{"chat.*", "chat", false},
		{"chat.*", "chatroom", false},
		{"*", "anything", true},
		{"*", "a:b/c@d", true},
		{"*", "user:alice", false},
		{"*", "user:", false},
		{"u*", "user:alice", false},
		{"user*", "user:alice", false},
		{"user*", "username", true},
		{"user:*", "user:alice", true},
		{"user:al*", "user:alice", true},
		{"user:al*", "user:bob", false},
		{"user:alice", "user:alice", true},
		{"user:alice", "user:alice2", false},
	} {
		assert.Equal(t, tc.want, auth.Match(tc.pattern, tc.topic), "Match(%q, %q)", tc.pattern, tc.topic)
	}
}

// TestIdentityGrants: what CanSubscribe and CanPublish allow, including
// the own user topic, claims given as a single string, and the zero
// Identity.
func TestIdentityGrants(t *testing.T) {
	v := newVerifier(t, auth.Config{Secret: secret})
	verify := func(c jwt.Claims) auth.Identity {
		id, err := v.Verify(hs256(t, c))
		require.NoError(t, err)
		return id
	}
	alice := verify(user("alice", []string{"chat.*", "news"}, []string{"chat.room"}))
	// A claim may be one string instead of an array.
	single := verify(jwt.MapClaims{"sub": "carol", "exp": at(time.Hour), "subscribe": "chat.*", "publish": "chat.*"})
	star := verify(user("bob", []string{"*"}, []string{"*"}))

	for _, tc := range []struct {
		id              auth.Identity
		topic           string
		subscribe, publ bool
	}{
		{alice, "user:alice", true, false}, // own topic: subscribe, but publish only if granted
		{alice, "user:bob", false, false},
		{alice, "chat.lobby", true, false},
		{alice, "chat.room", true, true},
		{alice, "news", true, false},
		{alice, "news.x", false, false},
		{alice, "other", false, false},
		{single, "chat.x", true, true},
		{single, "user:carol", true, false},
		{single, "news", false, false},
		{star, "anything", true, true},
		{star, "user:bob", true, false},
		{star, "user:alice", false, false},
		{auth.Identity{}, "anything", false, false},
		{auth.Identity{}, "user:", false, false},
	} {
		assert.Equal(t, tc.subscribe, tc.id.CanSubscribe(tc.topic), "%q CanSubscribe(%q)", tc.id.User(), tc.topic)
		assert.Equal(t, tc.publ, tc.id.CanPublish(tc.topic), "%q CanPublish(%q)", tc.id.User(), tc.topic)
	}

	var zero auth.Identity
	assert.True(t, zero.IsZero())
	assert.Equal(t, "", zero.User())
	assert.True(t, zero.Expired(t0), "the zero Identity must count as expired")
	assert.False(t, alice.IsZero())
}

// TestIdentitySameGrant: an Identity holds what its token grants, whatever
// the token's iat and jti: two verifications of one token, or of two tokens
// with the same claims, grant the same; a different sub, pattern or exp
// shows in what the Identity allows. (Identities are no longer interned:
// with a token per user, interning cost memory and saved none.)
func TestIdentitySameGrant(t *testing.T) {
	v := newVerifier(t, auth.Config{Secret: secret})
	verify := func(c auth.Claims) auth.Identity {
		id, err := v.Verify(hs256(t, c))
		require.NoError(t, err)
		return id
	}
	later := t0.Add(30 * time.Minute)
	type allows struct {
		user                    string
		subA, subB, pubBC, pubB bool
		expiredLater            bool
	}
	of := func(id auth.Identity) allows {
		return allows{id.User(), id.CanSubscribe("a"), id.CanSubscribe("b.x"), id.CanPublish("b.c"), id.CanPublish("b.x"), id.Expired(later)}
	}
	c := user("alice", []string{"a", "b.*"}, []string{"b.c"})
	tok := hs256(t, c)
	id1, err := v.Verify(tok)
	require.NoError(t, err)
	id2, err := v.Verify(tok)
	require.NoError(t, err)
	assert.Equal(t, of(id1), of(id2), "two Verify calls of one token")
	assert.Equal(t, allows{"alice", true, true, true, false, false}, of(id1))

	reissued := c
	reissued.IssuedAt, reissued.ID = at(-time.Minute), "another-jti"
	assert.Equal(t, of(id1), of(verify(reissued)), "same grant, other iat and jti")

	for name, mod := range map[string]func(*auth.Claims){
		"other sub":       func(c *auth.Claims) { c.Subject = "bob" },
		"other subscribe": func(c *auth.Claims) { c.Subscribe = []string{"a"} },
		"other publish":   func(c *auth.Claims) { c.Publish = []string{"b.*"} },
		"other exp":       func(c *auth.Claims) { c.ExpiresAt = at(time.Minute) },
		"claims swapped":  func(c *auth.Claims) { c.Subscribe, c.Publish = c.Publish, c.Subscribe },
	} {
		d := c
		mod(&d)
		assert.NotEqual(t, of(id1), of(verify(d)), name)
	}
}

// TestToken: the Bearer header comes first, then ?token=.
func TestToken(t *testing.T) {
	for _, tc := range []struct {
		authorization, query, want string
	}{
		{"Bearer abc", "", "abc"},
		{"bearer abc", "", "abc"},
		{"BEARER abc", "", "abc"},
		{"  Bearer   abc  ", "", "abc"},
		{"Bearer h", "token=q", "h"}, // the header wins
		{"Basic dXNlcjpwdw==", "", ""},
		{"Basic dXNlcjpwdw==", "token=q", "q"},
		{"Bearer", "token=q", "q"}, // no credentials: not a Bearer header
		{"", "token=q", "q"},
		{"", "topics=a,b&token=q&since=a:1", "q"},
		{"", "token=a%2Eb%20c", "a.b c"},
		{"", "token=a+b", "a b"},
		{"", "token=bad%zz", "bad%zz"}, // not unescapable: as it is
		{"", "token=first&token=second", "first"},
		{"", "token=", ""},
		{"", "tokens=q", ""},
		{"", "xtoken=q", ""},
		{"", "", ""},
	} {
		assert.Equal(t, tc.want, auth.Token(tc.authorization, tc.query), "Token(%q, %q)", tc.authorization, tc.query)
	}
}

func TestKeyMatches(t *testing.T) {
	for _, tc := range []struct {
		key, want string
		match     bool
	}{
		{"k3y", "k3y", true},
		{"k3y", "K3Y", false},
		{"k3y", "k3y ", false},
		{"k3", "k3y", false},
		{"", "k3y", false},
		{"", "", false}, // an unset key matches nothing
		{"k3y", "", false},
	} {
		assert.Equal(t, tc.match, auth.KeyMatches(tc.key, tc.want), "KeyMatches(%q, %q)", tc.key, tc.want)
	}
}

// TestLoadPublicKey: the PEM forms of public keys that issuers hand out,
// each loaded key verifying a token of its private key.
func TestLoadPublicKey(t *testing.T) {
	rsaPub, ecPub := &rsaKey().PublicKey, &ecKey().PublicKey
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "issuer.example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ecPub, ecKey())
	require.NoError(t, err)
	claims := user("alice", nil, nil)
	rsTok := sign(t, jwt.SigningMethodRS256, rsaKey(), claims)
	esTok := sign(t, jwt.SigningMethodES256, ecKey(), claims)

	for _, tc := range []struct {
		name  string
		pem   []byte
		want  crypto.PublicKey
		token string
	}{
		{"PKIX RSA", pkixPEM(t, rsaPub), rsaPub, rsTok},
		{"PKIX EC", pkixPEM(t, ecPub), ecPub, esTok},
		{"PKCS1 RSA", pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(rsaPub)), rsaPub, rsTok},
		{"certificate", pemBlock("CERTIFICATE", certDER), ecPub, esTok},
		{"text around the block", append(append([]byte("issued by x\n"), pkixPEM(t, ecPub)...), "trailer\n"...), ecPub, esTok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := auth.LoadPublicKey(tc.pem)
			require.NoError(t, err)
			require.True(t, tc.want.(interface{ Equal(crypto.PublicKey) bool }).Equal(k), "loaded %T, not the key", k)
			id, err := newVerifier(t, auth.Config{PublicKey: k}).Verify(tc.token)
			require.NoError(t, err)
			assert.Equal(t, "alice", id.User())
		})
	}

	ecDER, err := x509.MarshalECPrivateKey(ecKey())
	require.NoError(t, err)
	for name, data := range map[string][]byte{
		"empty":             nil,
		"not PEM":           []byte("garbage"),
		"private key":       pemBlock("EC PRIVATE KEY", ecDER),
		"garbage in PKIX":   pemBlock("PUBLIC KEY", []byte("garbage")),
		"garbage in PKCS1":  pemBlock("RSA PUBLIC KEY", []byte("garbage")),
		"garbage cert":      pemBlock("CERTIFICATE", []byte("garbage")),
		"EC key as PKCS1":   pemBlock("RSA PUBLIC KEY", pkixDER(t, ecPub)),
		"truncated PEM":     pkixPEM(t, ecPub)[:40],
		"JWK, not PEM":      []byte(`{"kty":"EC","crv":"P-256","x":"...","y":"..."}`),
		"PEM of a CSR only": pemBlock("CERTIFICATE REQUEST", []byte("x")),
	} {
		t.Run("rejects/"+name, func(t *testing.T) {
			k, err := auth.LoadPublicKey(data)
			assert.Error(t, err)
			assert.Nil(t, k)
		})
	}
}

func pkixDER(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	return der
}

// TestNewVerifierErrors: a verifier needs exactly one key, of a kind it can
// verify with exactly one algorithm.
func TestNewVerifierErrors(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		cfg     auth.Config
		wantMsg string
	}{
		{"no key", auth.Config{}, "neither"},
		{"empty secret", auth.Config{Secret: []byte{}}, "neither"},
		{"short secret", auth.Config{Secret: []byte("0123456789abcdef0123456789abcde")}, "at least 32 bytes, not 31"},
		{"both", auth.Config{Secret: secret, PublicKey: &ecKey().PublicKey}, "both"},
		{"P-384 key", auth.Config{PublicKey: &p384.PublicKey}, "P-256"},
		{"Ed25519 key", auth.Config{PublicKey: edPub}, "unsupported"},
		{"private key", auth.Config{PublicKey: ecKey()}, "unsupported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := auth.NewVerifier(tc.cfg)
			require.Error(t, err)
			assert.Nil(t, v)
			assert.Contains(t, err.Error(), tc.wantMsg)
		})
	}
}
