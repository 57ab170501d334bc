from scinas.cli import main

main()
