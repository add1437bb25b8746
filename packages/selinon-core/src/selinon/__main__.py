from selinon.cli import main

main()
