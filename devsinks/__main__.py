from devsinks.stack import main

main()
