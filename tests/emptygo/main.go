// Command emptygo does nothing: `make bench` times its start as the least any Go program, such as caisson's parent
// or its init, takes to start on the machine.
package main

func main() {}
