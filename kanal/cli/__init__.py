"""The `kanal` command line: argument parsing and one module per command (or family of commands),
talking to the controller's admin API and, where a command reads the data itself, to Kafka."""
