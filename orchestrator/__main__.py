from .cli import console

if __name__ == "__main__":  # not when a spawned process (the sweep's recorder) imports it
    console()
