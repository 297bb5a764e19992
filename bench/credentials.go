package bench

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fanout/fanout/auth"
)

// credentials are what the bench's clients authenticate with: one token for
// all (--token), or a secret to mint a token per client with
// (--jwt-secret). They travel to the worker processes on their standard
// input, never on a command line.
type credentials struct {
	Token  string `json:"token,omitempty"`
	Secret string `json:"secret,omitempty"`
	Topic  string `json:"topic,omitempty"` // what a minted token grants
}

// tokenTTL is how long a minted token is valid: longer than any run.
const tokenTTL = 24 * time.Hour

// newCredentials returns the credentials of the flags, or, when neither is
// given, of $FANOUT_TOKEN or $FANOUT_JWT_SECRET; nil when there are none.
func newCredentials(token, secret, topic string) (*credentials, error) {
	if token != "" && secret != "" {
		return nil, errors.New("--token and --jwt-secret exclude each other")
	}
	if token == "" && secret == "" {
		token = os.Getenv("FANOUT_TOKEN")
		if token == "" {
			secret = os.Getenv("FANOUT_JWT_SECRET")
		}
	}
	switch {
	case token != "":
		return &credentials{Token: token}, nil
	case secret != "":
		if len(secret) < auth.MinSecretBytes {
			return nil, fmt.Errorf("--jwt-secret (or $FANOUT_JWT_SECRET) is %d bytes: the server refuses an HS256 secret shorter than %d", len(secret), auth.MinSecretBytes)
		}
		return &credentials{Secret: secret, Topic: topic}, nil
	}
	return nil, nil
}

// token returns the token a client named sub presents: the one given, or
// one minted for sub that grants subscribing to and publishing on the
// topic. Nil credentials have no token.
func (c *credentials) token(sub string, now time.Time) (string, error) {
	switch {
	case c == nil:
		return "", nil
	case c.Secret == "":
		return c.Token, nil
	}
	return auth.SignHS256([]byte(c.Secret), auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   sub,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(tokenTTL)),
		},
		Subscribe: jwt.ClaimStrings{c.Topic},
		Publish:   jwt.ClaimStrings{c.Topic},
	})
}
