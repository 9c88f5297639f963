package portal

// SetAfterSignInCheck makes p run f in every sign-in between the check of
// its credentials and the creation of its session: where a concurrent
// change on another node can fall.
func SetAfterSignInCheck(p *Portal, f func()) { p.afterSignInCheck = f }
