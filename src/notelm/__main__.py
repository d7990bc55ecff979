from notelm.cli import main

main()
