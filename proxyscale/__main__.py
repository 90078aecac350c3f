from proxyscale.cli import main

main()
