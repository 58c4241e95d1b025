from mailctl.cli import run

run()
