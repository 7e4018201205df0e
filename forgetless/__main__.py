from forgetless.cli.main import main

main()
