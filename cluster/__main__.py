from cluster.run import main

main()
