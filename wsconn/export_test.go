package wsconn

// SmallWindow is smallWindow for the external tests.
var SmallWindow = smallWindow
