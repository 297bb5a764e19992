package main

import "strconv"

// pageFlag is --page: a boolean flag that remembers whether it was given,
// for its default depends on authentication (on without it, off with it).
type pageFlag struct {
	set, on bool
}

// Set parses a boolean, as flag.Bool does.
func (p *pageFlag) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	p.set, p.on = true, v
	return nil
}

func (p *pageFlag) String() string {
	if p == nil || !p.set {
		return "auto"
	}
	return strconv.FormatBool(p.on)
}

// IsBoolFlag lets --page stand for --page=true.
func (p *pageFlag) IsBoolFlag() bool { return true }

// enabled reports whether the page is served: as given, or, if not given,
// only without authentication.
func (p pageFlag) enabled(auth bool) bool {
	if p.set {
		return p.on
	}
	return !auth
}
