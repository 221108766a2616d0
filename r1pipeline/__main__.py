"""`python -m r1pipeline ...`: compose the Hydra config and run the selected stage."""
from r1pipeline.cli import main

if __name__ == "__main__":
    main()
