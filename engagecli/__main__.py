from engagecli.cli import main

main()
