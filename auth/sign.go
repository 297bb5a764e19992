package auth

import (
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// SignHS256 returns claims as a token signed with secret (HS256), as a
// Verifier configured with that secret accepts it. It is for tools and
// tests, such as "fanout bench --jwt-secret", which mints one token per
// client; issuing tokens to users is the application's job.
func SignHS256(secret []byte, claims Claims) (string, error) {
	if len(secret) < MinSecretBytes {
		return "", ErrShortSecret
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: sign token: %w", err)
	}
	return s, nil
}
