from smtpscript.cli import main

main()
